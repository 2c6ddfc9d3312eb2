"""What the engine needs from the drive: the `SpaceAccess` protocol the drive implements, and
the `Allowance` (room held in one user's quota) it hands out. The engine imports nothing from
the drive; it reaches the users' spaces only through these."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable, Protocol


class Allowance(Protocol):
    """Room in one user's quota held for bytes on their way in (a download in the temporary
    area), so that concurrent writers never store more than the quota."""

    held: int

    def claim(self, total: int, *, force: bool = False, whole: bool = False) -> int:
        """Hold room for `total` bytes, or as many as the quota allows; returns what is held.
        `force`: hold `total` even over the quota (bytes already on disk); `whole`: all of
        `total` or nothing more (a file of known length that cannot fit holds no room that
        others could use)."""

    def settle(self, delta: int) -> None:
        """Book `delta` bytes as stored and hold nothing more, in one step."""

    def release(self) -> None:
        """Hold nothing more, for good: later claims hold nothing."""


class SpaceAccess(Protocol):
    """What the engine needs from the drive: its space writer (provider/space_writer.py),
    through which every write into a user's space goes, with the path lock and the quota."""

    def root(self, user: str) -> Path:
        """The user's space folder (to read; writes go through the methods below)."""

    def reserve(self, user: str, *, key: str | None = None) -> Allowance:
        """A new, empty allowance in the user's quota; `key` names what it is for (a task), so
        that every node holding room for that thing holds one allowance, counted once."""

    def disk_room(self) -> int:
        """Bytes free on disk above the configured reserve."""

    def locked(self, *paths: Path) -> AbstractContextManager[None]:
        """Hold the drive's locks on paths of a space while deciding to change them (the
        writer's methods may be called inside, on these paths only)."""

    def write_file(self, user: str, target: Path, body: bytes) -> bool:
        """Put a small file at `target` atomically and book its size; whether it replaced one."""

    def remove(self, user: str, path: Path) -> bool:
        """Remove a file or folder and refund its bytes; False if nothing was there."""

    def place(self, source: Path, folder: Path, name: str, allowance: Allowance, size: int, *,
              trying: Callable[[Path], None] = lambda path: None) -> Path:
        """Hard-link the file, or rename the folder, `source` into `folder` under a free name
        and book its `size` bytes from `allowance`; where it went. `trying(path)` is told each
        name just before it is tried."""

    def relink(self, stored: Path, published: Path, downloaded: Path) -> None:
        """Make `published` a link to the content store's `stored`, if it is still `downloaded`."""
