"""A running task's cancel flag, which also cuts what its transfer is waiting on.

Setting the flag alone stops a transfer at its next block of bytes; a body read blocked on an
origin that went silent would hold the worker, and the task's temporary data, until the read
time-out (a minute by default). A transfer reading a body registers how to cut its connection
(`interrupting`), and `set` cuts it: the read ends at once, and the transfer, finding the
flag set, ends as cancelled.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


class CancelSignal(threading.Event):
    """A threading.Event whose `set` also calls the interrupts registered at that moment."""

    def __init__(self) -> None:
        super().__init__()
        self._interrupts_lock = threading.Lock()
        self._interrupts: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._interrupts_lock:
            super().set()
            interrupts = list(self._interrupts)
        for interrupt in interrupts:
            _quietly(interrupt)

    @contextlib.contextmanager
    def interrupting(self, interrupt: Callable[[], None]) -> Iterator[None]:
        """While inside, a cancel calls `interrupt` (at once if the flag is set already)."""
        with self._interrupts_lock:
            self._interrupts.append(interrupt)
            already = self.is_set()
        if already:
            _quietly(interrupt)
        try:
            yield
        finally:
            with self._interrupts_lock:
                self._interrupts.remove(interrupt)


def _quietly(interrupt: Callable[[], None]) -> None:
    with contextlib.suppress(OSError):  # the connection may have closed meanwhile
        interrupt()
