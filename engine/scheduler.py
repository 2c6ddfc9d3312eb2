"""Who runs next: the worker threads, the claim of a task and its lease, the limits, the
registry of running tasks and their cancel flags.

At most `workers` downloads run at once on this node, and `per_user` per user over all the
nodes sharing the database, the next one going to the user with the fewest running (oldest
task first); two tasks for the same source never run together, so the second one is delivered
from the store without a second transfer. A claim is one statement in the task store
(`TaskStore.claim`) that makes the task downloading, held by this node under a lease of
`lease` seconds. Every third of the lease this node renews the leases of what it runs, and
stops a task whose renewal finds it cancelled (from any node) or taken over by another node
(this one stalled past its lease); a task whose node died is runnable again once its lease has
passed, and the node that claims it resumes it from the saved bytes. The in-memory part is
only what this node runs (`Running`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.download import Download
from engine.cancel_signal import CancelSignal
from engine.kinds import TaskState
from engine.tasks import RUNNING, UNFINISHED, Task, TaskStore
from engine.torrent_client import TorrentProgress

_log = logging.getLogger(__name__)


@dataclass
class Running:
    """A task this node runs: its cancel flag and what its source reports while it runs."""

    task_id: int
    user: str
    source: str
    cancel: CancelSignal
    download: Download | None = None
    started: float = 0.0
    torrent: TorrentProgress | None = None


class Scheduler:
    """The worker pool of the node `node`. `run(task, running)` does one try of a claimed task;
    `discard_temp` frees the temporary data of a task cancelled while no worker holds it;
    `on_renewal` is called after each round of lease renewals."""

    def __init__(self, tasks: TaskStore, *, node: str, lease: float, workers: int, per_user: int,
                 discard_temp: Callable[[Task], None], on_renewal: Callable[[], None]) -> None:
        self.tasks = tasks
        self.node = node
        self.lease = lease
        self.workers = workers
        self.per_user = per_user
        self._discard_temp = discard_temp
        self._on_renewal = on_renewal
        self._cond = threading.Condition()
        self._running: dict[int, Running] = {}
        self._threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def start(self, run: Callable[[Task, Running], None]) -> None:
        for number in range(self.workers):
            thread = threading.Thread(target=self._work, args=(run,), name=f"download-worker-{number + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        renewing = threading.Thread(target=self._keep_leases, name="lease-renewal", daemon=True)
        renewing.start()
        self._threads.append(renewing)

    def stop(self) -> None:
        """Interrupt running downloads; they stay resumable and continue at the next start."""
        self.stopping.set()
        with self._cond:
            for running in self._running.values():
                running.cancel.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def running(self, task_id: int) -> Running | None:
        return self._running.get(task_id)

    def live_torrent(self, task_id: int) -> TorrentProgress | None:
        """Peers, seeds and rate of a running torrent."""
        running = self._running.get(task_id)
        return running.torrent if running else None

    def live_progress(self, task_id: int) -> tuple[int, float] | None:
        """(bytes done, seconds running) of a running task, for speed and ETA."""
        running = self._running.get(task_id)
        if running is None or running.download is None:
            return None
        return running.download.bytes_done, time.monotonic() - running.started

    def cancel(self, task: Task) -> bool:
        if not self.tasks.set_state_if(task.id, UNFINISHED, state=TaskState.CANCELLED, finished_at=time.time()):
            return False
        with self._cond:
            running = self._running.get(task.id)
            if running:
                running.cancel.set()  # the worker frees the temporary data
                return True
        if task.state in RUNNING and task.node != self.node and (task.lease_until or 0) >= time.time():
            return True  # its node stops it at its next renewal and frees the data it is writing
        self._discard_temp(task)
        return True

    def wait_until_left(self, task_id: int, timeout: float = 10.0) -> None:
        """Wait until no worker here runs `task_id` any more (a cancelled transfer finishing its
        clean-up), so that the task can be queued again without two workers on it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while task_id in self._running and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def _work(self, run: Callable[[Task, Running], None]) -> None:
        while not self.stopping.is_set():
            claimed = self._claim()
            if claimed is not None:
                task, running = claimed
                try:
                    run(task, running)
                finally:
                    with self._cond:
                        self._running.pop(task.id, None)
                        self._cond.notify_all()

    def _claim(self) -> tuple[Task, Running] | None:
        with self._cond:
            while not self.stopping.is_set():
                if len(self._running) < self.workers:
                    task = self.tasks.claim(self.node, lease=self.lease, per_user=self.per_user)
                    if task is not None:
                        running = Running(task.id, task.user, task.source, CancelSignal(), started=time.monotonic())
                        self._running[task.id] = running
                        return task, running
                next_wake = self.tasks.next_wake()
                timeout = 1.0 if next_wake is None else max(0.05, min(1.0, next_wake - time.time()))
                self._cond.wait(timeout)
        return None

    def _keep_leases(self) -> None:
        while not self.stopping.wait(self.lease / 3):
            try:
                self._renew()
                self._on_renewal()
            except Exception:  # a database hiccup; the next round tries again, within the lease
                _log.exception("renewing the leases of node %s", self.node)

    def _renew(self) -> None:
        """Extend the leases of the tasks running here; stop those no longer this node's."""
        with self._cond:
            running = dict(self._running)
        if not running:
            return
        held = self.tasks.renew(self.node, running.keys(), time.time() + self.lease)
        with self._cond:
            lost = [self._running[task_id] for task_id in running.keys() - held if task_id in self._running]
        for task in lost:  # (a task that finished meanwhile has left `_running`)
            _log.info("task %d: cancelled or taken over by another node; stopping it here", task.task_id)
            task.cancel.set()
