"""Per-user quota and free-disk guard.

Used bytes live in the `users` table and move by deltas on every PUT, DELETE, COPY and
finished download, so no request walks a directory. `recount` walks a space once (at start,
after a crash might have left a delta unapplied) and stores the true figure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wsgidav.dav_error import HTTP_INSUFFICIENT_STORAGE, DAVError

from provider.accounts import Accounts


class QuotaExceeded(DAVError):
    """507 Insufficient Storage with a reason the client can show."""

    def __init__(self, reason: str) -> None:
        super().__init__(HTTP_INSUFFICIENT_STORAGE, reason)
        self.reason = reason


def tree_size(path: Path | str) -> int:
    """Bytes of all regular files below `path` (symlinks not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += stat.st_size
    return total


class Quota:
    """Answers "is there room for N more bytes for this user?" and books the change."""

    def __init__(self, accounts: Accounts, storage_root: Path, min_free: int | None) -> None:
        self._accounts = accounts
        self._storage_root = storage_root
        self._min_free = min_free or 0

    def used(self, user: str) -> int:
        found = self._accounts.get(user)
        return found.used_bytes if found else 0

    def available(self, user: str) -> int | None:
        """Bytes the user may still add, or None when neither quota nor disk limits them."""
        disk_room = max(0, self.disk_free() - self._min_free)
        room = self.quota_room(user)
        return disk_room if room is None else min(room, disk_room)

    def quota_bytes(self, user: str) -> int | None:
        found = self._accounts.get(user)
        return found.quota_bytes if found else None

    def quota_room(self, user: str) -> int | None:
        """Bytes the user's quota still allows, or None without a quota."""
        found = self._accounts.get(user)
        if found is None or found.quota_bytes is None:
            return None
        return max(0, found.quota_bytes - found.used_bytes)

    def disk_free(self) -> int:
        return shutil.disk_usage(self._storage_root).free

    def low_on_disk(self) -> bool:
        return self.disk_free() < self._min_free

    def check_room(self, user: str, extra_bytes: int) -> None:
        """Raise QuotaExceeded unless `extra_bytes` more fit in quota and above `min_free`."""
        if extra_bytes <= 0:
            return
        found = self._accounts.get(user)
        if found and found.quota_bytes is not None and found.used_bytes + extra_bytes > found.quota_bytes:
            raise QuotaExceeded(
                f"quota of user {user!r} exceeded: {found.used_bytes} of {found.quota_bytes} bytes used, "
                f"{extra_bytes} more needed; delete files or ask for a larger quota"
            )
        free = self.disk_free()
        if free - extra_bytes < self._min_free:
            raise QuotaExceeded(
                f"server disk almost full: {free} bytes free, {extra_bytes} needed and "
                f"{self._min_free} kept in reserve (storage.min_free); try again later"
            )

    def charge(self, user: str, delta: int) -> None:
        self._accounts.add_used(user, delta)

    def recount(self, user: str, space: Path) -> int:
        used = tree_size(space)
        self._accounts.set_used(user, used)
        return used
