"""Who runs next: the worker threads, the claim of a task, the limits, the registry of running
tasks and their cancel flags.

At most `workers` downloads run at once and `per_user` per user, the next one going to the
user with the fewest running (oldest task first); two tasks for the same source never run
together, so the second one is delivered from the store without a second transfer. A claim is
one conditional state change in the task store (TaskState.QUEUED/TaskState.WAITING -> TaskState.DOWNLOADING), so it can
become a lease in a shared database for several nodes without changing the workers; the
in-memory part is only what this node runs (`Running`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.download import Download
from engine.kinds import TaskState
from engine.tasks import UNFINISHED, Task, TaskStore
from engine.torrent_client import TorrentProgress


@dataclass
class Running:
    """A task this node runs: its cancel flag and what its source reports while it runs."""

    task_id: int
    user: str
    source: str
    cancel: threading.Event
    download: Download | None = None
    started: float = 0.0
    torrent: TorrentProgress | None = None


class Scheduler:
    """The worker pool. `run(task, running)` does one try of a claimed task; `discard_temp`
    frees the temporary data of a task cancelled while no worker holds it."""

    def __init__(self, tasks: TaskStore, *, workers: int, per_user: int,
                 discard_temp: Callable[[Task], None]) -> None:
        self.tasks = tasks
        self.workers = workers
        self.per_user = per_user
        self._discard_temp = discard_temp
        self._cond = threading.Condition()
        self._running: dict[int, Running] = {}
        self._threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def start(self, run: Callable[[Task, Running], None]) -> None:
        for number in range(self.workers):
            thread = threading.Thread(target=self._work, args=(run,), name=f"download-worker-{number + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

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
        self._discard_temp(task)
        return True

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
                    task = self._pick(self.tasks.runnable(time.time()))
                    if task is not None and self.tasks.set_state_if(task.id, (TaskState.QUEUED, TaskState.WAITING), state=TaskState.DOWNLOADING):
                        running = Running(task.id, task.user, task.source, threading.Event(), started=time.monotonic())
                        self._running[task.id] = running
                        return task, running
                next_wake = self.tasks.next_wake()
                timeout = 1.0 if next_wake is None else max(0.05, min(1.0, next_wake - time.time()))
                self._cond.wait(timeout)
        return None

    def _pick(self, candidates: list[Task]) -> Task | None:
        per_user: dict[str, int] = {}
        for running in self._running.values():
            per_user[running.user] = per_user.get(running.user, 0) + 1
        busy_sources = {running.source for running in self._running.values()}
        eligible = [
            task for task in candidates
            if per_user.get(task.user, 0) < self.per_user and task.source not in busy_sources
        ]
        return min(eligible, key=lambda task: (per_user.get(task.user, 0), task.id), default=None)
