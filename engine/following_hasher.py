"""Hashing downloaded files: a SHA-256 that follows a file while a transfer writes it,
reading from the page cache, and `file_sha256` for a file already written.

Used where the bytes go socket to file without passing through Python (splice), and for
segmented downloads, whose ranges land out of order: the thread hashes from where it stands
up to `written()`, the end of what is written without a gap. It runs at the lowest CPU
priority (Linux, where a thread has its own), so it hashes with the CPU time the transfer
leaves over and never slows it down. `finish()` stops it and hashes the rest on the
caller's thread at normal priority; the engine publishes a download first and calls it
afterwards, unless it has a checksum to verify.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
from pathlib import Path
from typing import Callable

READ_BLOCK = 1024 * 1024


def file_sha256(path: Path) -> "hashlib._Hash":
    """The SHA-256 of the whole file (a hasher, so that more bytes can follow)."""
    with open(path, "rb") as saved:
        return hashlib.file_digest(saved, "sha256")


class FollowingHasher(threading.Thread):
    def __init__(self, path: Path, written: Callable[[], int], hasher: "hashlib._Hash | None" = None,
                 position: int = 0) -> None:
        """Hash `path` up to `written()`; `hasher` has already taken its first `position` bytes."""
        super().__init__(name="following-hasher", daemon=True)
        self._path = path
        self._written = written
        self._hasher = hasher or hashlib.sha256()
        self._position = position
        self._transfer_over = threading.Event()

    def run(self) -> None:
        if sys.platform == "linux":
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        with open(self._path, "rb") as saved:
            while not self._transfer_over.is_set():
                self._hash_up_to(saved.fileno(), self._written(), self._transfer_over)
                self._transfer_over.wait(0.05)

    def _hash_up_to(self, fd: int, target: int, stop: threading.Event | None = None) -> None:
        while self._position < target and not (stop and stop.is_set()):
            data = os.pread(fd, min(READ_BLOCK, target - self._position), self._position)
            if not data:
                raise RuntimeError(f"{self._path} ends at {self._position} bytes, before the {target} written")
            self._hasher.update(data)
            self._position += len(data)

    def stop(self) -> None:
        """The transfer is over: the thread stops (finish() hashes the rest)."""
        self._transfer_over.set()

    def abandon(self) -> None:
        """Stop, hashing nothing more: the caller will not use this hash."""
        self.stop()
        self.join()

    def finish(self) -> "hashlib._Hash":
        """Hash everything written so far; the hasher."""
        self.stop()
        self.join()
        with open(self._path, "rb") as saved:
            self._hash_up_to(saved.fileno(), self._written())
        return self._hasher
