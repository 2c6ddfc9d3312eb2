"""Per-user quota, the free-disk guard, and reservations that keep the quota exact.

Used bytes live in the `users` table and move by deltas on every PUT, DELETE, COPY,
property write and finished download, so no request walks a directory. `recount` walks a
space once (at start, after a crash might have left a delta unapplied) and stores the true
figure.

Bytes on their way in (a PUT's body, a COPY, a download in the temporary area) are held by a
`Reservation` before they are written: room is taken from the quota first, under one lock,
and turned into used bytes when the result is in place (`settle`), or given back if it never
is (`release`). So any number of concurrent writers together never store more than the
quota. Reservations live in memory only: a restart starts with none, and the engine takes
them again for the partial downloads it keeps. `used` reports stored plus reserved bytes.

The number of files and folders per user (`storage.max_files`) is counted the same way: a
walk at start, deltas from the drive's creations and deletions. Files the engine writes
(downloads, error notes, and the triggers it removes) are not counted as they come: the
count is taken again from the disk before a creation is refused, and the cap applies to
what clients create (a download is held by the byte quota instead).
"""

from __future__ import annotations

import os
import shutil
import threading
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
    return tree_usage(path)[0]


def tree_usage(path: Path | str) -> tuple[int, int]:
    """(bytes of the regular files, number of files and folders) below `path`, itself excluded."""
    total = entries = 0
    for folder, dirs, files in os.walk(path):
        entries += len(dirs)
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            entries += 1
            if not os.path.islink(os.path.join(folder, name)):
                total += stat.st_size
    return total, entries


class Quota:
    """Answers "is there room for N more bytes for this user?" and books the change."""

    def __init__(self, accounts: Accounts, storage_root: Path, min_free: int | None,
                 max_files: int | None = None) -> None:
        self._accounts = accounts
        self._storage_root = storage_root
        self._min_free = min_free or 0
        self._max_files = max_files
        # One lock for every check-and-book: the stored figure, the reservations, the counts.
        self._lock = threading.RLock()
        self._reserved: dict[str, int] = {}
        self._entries: dict[str, int] = {}

    def used(self, user: str) -> int:
        """Bytes stored for the user plus bytes reserved for writes in progress."""
        with self._lock:
            found = self._accounts.get(user)
            return (found.used_bytes if found else 0) + self._reserved.get(user, 0)

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
        with self._lock:
            found = self._accounts.get(user)
            if found is None or found.quota_bytes is None:
                return None
            return max(0, found.quota_bytes - found.used_bytes - self._reserved.get(user, 0))

    def disk_free(self) -> int:
        return shutil.disk_usage(self._storage_root).free

    def reserve(self, user: str, nbytes: int = 0) -> Reservation:
        """A reservation holding `nbytes` for `user`; QuotaExceeded if they do not fit."""
        reservation = Reservation(self, user)
        reservation.require(nbytes)
        return reservation

    def charge(self, user: str, delta: int) -> None:
        """Book a change that needs no room first (something was removed or made smaller)."""
        with self._lock:
            self._accounts.add_used(user, delta)

    def recount(self, user: str, space: Path, extra_bytes: int = 0) -> int:
        """Store the true figure: the space's files plus `extra_bytes` kept elsewhere (dead
        properties); also recounts the files and folders."""
        used, entries = tree_usage(space)
        with self._lock:
            self._accounts.set_used(user, used + extra_bytes)
            self._entries[user] = entries
        return used + extra_bytes

    # --- files and folders -------------------------------------------------

    def add_entries(self, user: str, count: int, space: Path) -> None:
        """Book `count` new files or folders (QuotaExceeded beyond storage.max_files)."""
        with self._lock:
            current = self._entries.get(user)
            if self._max_files is not None and (current is None or current + count > self._max_files):
                current = self._entries[user] = tree_usage(space)[1]
                if current + count > self._max_files:
                    raise QuotaExceeded(
                        f"too many files and folders: at most {self._max_files} per user "
                        "(storage.max_files); delete some first"
                    )
            if current is not None:
                self._entries[user] = current + count

    def remove_entries(self, user: str, count: int) -> None:
        with self._lock:
            if user in self._entries:
                self._entries[user] = max(0, self._entries[user] - count)

    # --- reservations (see Reservation) -------------------------------------

    def _hold(self, reservation: Reservation, total: int, *, least: int | None = None, force: bool = False,
              whole: bool = False) -> int:
        """Set what `reservation` holds to `total`. Unless `force`, growth stops where the
        quota does, but not below `least` (QuotaExceeded if even that does not fit, or if it
        leaves less than storage.min_free on disk); `least` None: any amount will do; `whole`:
        all of `total` or no growth at all. A closed reservation holds nothing more."""
        user = reservation.user
        with self._lock:
            if reservation.closed:
                return reservation.held
            extra = total - reservation.held
            if extra > 0 and not force:
                found = self._accounts.get(user)
                if found is not None and found.quota_bytes is not None:
                    room = found.quota_bytes - found.used_bytes - self._reserved.get(user, 0)
                    if extra > room and whole:
                        return reservation.held
                    if extra > room:
                        wanted = reservation.held + max(0, room)
                        if least is not None and wanted < least:
                            raise QuotaExceeded(
                                f"quota of user {user!r} exceeded: {found.quota_bytes - max(0, room)} of "
                                f"{found.quota_bytes} bytes stored or being written, {least - reservation.held} "
                                "more needed; delete files or ask for a larger quota"
                            )
                        total, extra = wanted, wanted - reservation.held
                if least is not None:
                    self.check_disk(extra)
            self._reserved[user] = self._reserved.get(user, 0) + extra
            if not self._reserved[user]:
                del self._reserved[user]
            reservation.held = total
            return total

    def check_disk(self, extra: int) -> None:
        """QuotaExceeded unless `extra` more bytes leave storage.min_free on the disk."""
        free = self.disk_free()
        if extra > 0 and free - extra < self._min_free:
            raise QuotaExceeded(
                f"server disk almost full: {free} bytes free, {extra} needed and "
                f"{self._min_free} kept in reserve (storage.min_free); try again later"
            )

    def _settle(self, reservation: Reservation, delta: int) -> None:
        with self._lock:
            self._accounts.add_used(reservation.user, delta)
            self._hold(reservation, 0, force=True)
            reservation.closed = True


class Reservation:
    """Room held for one user's bytes on their way in: `settle` it once they are in place,
    else `release` it (also on leaving its `with` block; after `settle` that does nothing).
    Either closes it: a late claim (a download's other connection still finishing a read
    after a cancel) holds nothing, so no room stays held with no one to give it back."""

    def __init__(self, quota: Quota, user: str) -> None:
        self._quota = quota
        self.user = user
        self.held = 0
        self.closed = False

    def require(self, total: int, ahead: int = 0) -> None:
        """Hold at least `total` bytes, and up to `ahead` more while there is room; raise
        QuotaExceeded (quota or storage.min_free) if `total` does not fit."""
        if total > self.held:
            self._quota._hold(self, total + ahead, least=total)

    def claim(self, total: int, *, force: bool = False, whole: bool = False) -> int:
        """Hold room for `total` bytes, or for as many as the quota allows; returns what is
        held, which never shrinks. `force`: hold exactly `total`, even over the quota (for
        bytes already on disk); `whole`: all of `total` or nothing more. The free-disk reserve
        is not checked here."""
        if force:
            return self._quota._hold(self, total, force=True)
        return self._quota._hold(self, max(total, self.held), whole=whole)

    def settle(self, delta: int) -> None:
        """Book `delta` as stored bytes and hold nothing more, in one step."""
        self._quota._settle(self, delta)

    def release(self) -> None:
        if self.held:
            self._quota._hold(self, 0, force=True)
        self.closed = True

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
