"""How often a task's progress is written to the task store: at most once per interval per
task, however many streams or segments report it, with the last figure written at the end of
each try so that a resume starts from it."""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class ProgressSaver(Generic[T]):
    """Wraps `save`: a call saves at once if `interval` seconds passed since the last save, else
    it is kept back; `flush` saves what was kept back, if anything."""

    def __init__(self, save: Callable[[T], None], interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._save = save
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._saved_at: float | None = None
        self._kept: list[T] = []  # the figure not yet saved, if any

    def __call__(self, value: T) -> None:
        with self._lock:
            now = self._clock()
            if self._saved_at is not None and now - self._saved_at < self._interval:
                self._kept = [value]
                return
            self._saved_at, self._kept = now, []
            self._save(value)

    def flush(self) -> None:
        with self._lock:
            if self._kept:
                value, self._kept = self._kept[0], []
                self._saved_at = self._clock()
                self._save(value)
