"""What the engine needs from the drive: the `SpaceAccess` protocol the drive implements, and
the `Allowance` (room held in one user's quota) it hands out. The engine imports nothing from
the drive; it reaches the users' spaces only through these."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol


class Allowance(Protocol):
    """Room in one user's quota held for bytes on their way in (a download in the temporary
    area), so that concurrent writers never store more than the quota."""

    held: int

    def claim(self, total: int, *, force: bool = False) -> int:
        """Hold room for `total` bytes, or as many as the quota allows; returns what is held.
        `force`: hold `total` even over the quota (bytes already on disk)."""

    def settle(self, delta: int) -> None:
        """Book `delta` bytes as stored and hold nothing more, in one step."""

    def release(self) -> None:
        """Hold nothing more."""


class SpaceAccess(Protocol):
    """What the engine needs from the drive."""

    def root(self, user: str) -> Path:
        """The user's space folder."""

    def reserve(self, user: str) -> Allowance:
        """A new, empty allowance in the user's quota."""

    def disk_room(self) -> int:
        """Bytes free on disk above the configured reserve."""

    def charge(self, user: str, delta: int) -> None:
        """Book `delta` bytes against the user's quota."""

    def locked(self, path: Path) -> AbstractContextManager[None]:
        """Hold the drive's lock on one file of a space while replacing it."""
