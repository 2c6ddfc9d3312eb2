"""Finished triggers stay in their folder for a while before they go (SPEC 4.4).

A client that checks its upload reads the file back right after its PUT (rclone asks for its
properties; Finder and Explorer set its times and list the folder) and calls the upload
failed, then uploads again, if the file is gone by then. So the trigger of a finished
download is removed `linger` seconds later, not at once; uploading it again meanwhile starts
the wait over. This module only keeps the times: at each due time it calls `remove(user,
path)`, which decides whether the trigger may go (it may have been replaced meanwhile).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

_log = logging.getLogger(__name__)


class LingeringTriggers:
    """Due times of trigger removals, and the thread that performs them."""

    def __init__(self, linger: float, remove: Callable[[str, str], None]) -> None:
        self._linger = linger
        self._remove = remove
        self._due: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="trigger-linger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def schedule(self, user: str, rel_path: str) -> None:
        """Remove the trigger at `rel_path` `linger` seconds from now (replacing an earlier time)."""
        with self._cond:
            self._due[(user, rel_path)] = time.monotonic() + self._linger
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    ripe = [key for key, due in self._due.items() if due <= now]
                    if ripe:
                        break
                    self._cond.wait(min(self._due.values(), default=now + 60) - now)
                if self._stopping:
                    return
                for key in ripe:
                    del self._due[key]
            for user, rel_path in ripe:
                try:
                    self._remove(user, rel_path)
                except Exception:
                    _log.exception("could not remove the finished trigger %s of %s", rel_path, user)
