"""One try of a claimed task and what comes of it: the task's source runs it (engine/sources),
and its outcome is decided here in one place. Cancelled: the data goes (unless the server is
stopping, or another node has taken the task over: then it stays, to be resumed). Transient:
the task waits and tries again, up to engine.retry.give_up_after. Permanent: the task fails,
the user is told and the trigger gets its `.error.txt`. A fault of the server's own disk waits
without counting towards giving up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from engine.allowances import Allowances
from engine.errors import Cancelled, FetchError, failure, local_storage_error
from engine.outcomes import Disposition, Outcome as TransferOutcome
from engine.notifications import Message, Notifier
from engine.scheduler import Running
from engine.sources import Source
from engine.space_access import SpaceAccess
from engine.kinds import TaskState
from engine.tasks import RUNNING, UNFINISHED, Task, TaskStore
from engine.temp_area import TempArea

if TYPE_CHECKING:
    from engine.engine_settings import EngineSettings

_log = logging.getLogger(__name__)


class Attempts:
    """`report_trigger_errors(task)` writes the `.error.txt` of a failed task's trigger."""

    def __init__(self, tasks: TaskStore, spaces: SpaceAccess, sources: Iterable[Source], settings: EngineSettings, *,
                 notifier: Notifier, allowances: Allowances, temp: TempArea, stopping: threading.Event,
                 report_trigger_errors: Callable[[Task], None]) -> None:
        self.tasks = tasks
        self._spaces = spaces
        self._sources = {kind: source for source in sources for kind in source.kinds}
        self.settings = settings
        self.notifier = notifier
        self._allowances = allowances
        self._temp = temp
        self._stopping = stopping
        self._report_trigger_errors = report_trigger_errors

    def run(self, task: Task, running: Running) -> None:
        try:
            if self._spaces.disk_room() <= 0:
                raise failure(TransferOutcome.DISK_ALMOST_FULL)
            self._sources[task.kind].run(task, running)
        except Cancelled:
            current = self.tasks.get(task.id)
            if current is not None and current.node != task.node:
                self._allowances.release_room(task)  # the node that took it over holds the data now
            elif not self._stopping.is_set():
                self._temp.discard_temp(task)
        except Exception as error:
            fault = error if isinstance(error, FetchError) else local_storage_error(error)
            if fault is None:
                _log.exception("task %d: unexpected error", task.id)
                self.fail(task, "an internal error stopped this download; the server log has the details")
            elif fault.outcome.disposition is Disposition.FAIL:
                self.fail(task, str(fault))
            else:
                if fault.outcome.disposition is Disposition.WAIT_FOR_DISK:
                    _log.warning("task %d waits for the server's disk: %r", task.id, error)
                self.retry_later(task, fault)

    def retry_later(self, task: Task, error: FetchError) -> None:
        """Park the task as waiting. Network faults count towards engine.retry.give_up_after;
        a fault of the server's own disk does not, and ends a run of network faults."""
        current = self.tasks.get(task.id)
        if current is None or current.state not in RUNNING or current.node != task.node:
            return
        now = time.time()
        attempts = current.attempts + 1
        counts = error.outcome.disposition is not Disposition.WAIT_FOR_DISK
        first_failure = current.first_failure_at or now if counts else None
        if first_failure is not None and self.settings.retry.gives_up(first_failure, now):
            self.fail(task, f"{error} (gave up after {attempts} tries over {int(now - first_failure)} s)")
            return
        wait = self.settings.retry.wait_before(attempts, error.retry_after)
        self._allowances.hold_only_saved_bytes(task)
        self.tasks.set_state_if(
            task.id, RUNNING, holder=task.node, state=TaskState.WAITING, attempts=attempts, first_failure_at=first_failure,
            next_attempt_at=now + wait, error=f"{error}; retrying in {wait:.0f} s",
        )
        _log.info("task %d: %s; retry %d in %.1f s", task.id, error, attempts, wait)

    def fail(self, task: Task, reason: str) -> None:
        if not self.tasks.set_state_if(task.id, UNFINISHED, holder=task.node, state=TaskState.FAILED, error=reason,
                                       finished_at=time.time()):
            return
        _log.info("task %d failed: %s", task.id, reason)
        self.notifier.notify(self._spaces.root(task.user), Message(
            f"fetchdrive: {task.display_name} failed", f"The download of {task.display_name} failed: {reason}"))
        self._temp.discard_temp(task)
        if task.trigger_path:
            self._report_trigger_errors(task)
