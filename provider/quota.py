"""Per-user quota, the free-disk guard, and reservations that keep the quota exact.

Used bytes live in the `users` table and move by deltas on every PUT, DELETE, COPY,
property write and finished download, so no request walks a directory. `recount` walks a
space once (at start, after a crash might have left a delta unapplied) and stores the true
figure.

Bytes on their way in (a PUT's body, a COPY, a download in the temporary area) are held by a
`Reservation` before they are written: room is taken from the quota first and turned into
used bytes when the result is in place (`settle`), or given back if it never is
(`release`). So any number of concurrent writers together never store more than the quota,
on one node or many: reservations are rows of the `reservations` table, and each
check-and-book is one write transaction that locks the user's row first. A reservation
counts while its node is alive (engine/nodes.py); those of a node not seen for
`engine.lease` seconds stop counting (and are swept when a node starts), and a node
starting again drops its own old ones (the engine takes them again for the partial
downloads it keeps). `used` reports stored plus reserved bytes.

A change in a space and its booking happen under the user's lock (`booking`), which `recount`
holds too, so a recount on one node never races a write on another: it sees a file either
before it arrived and before it was booked, or after both.

The number of files and folders per user (`storage.max_files`) is counted the same way, in
the `entry_counts` table: a walk at start, deltas from the drive's creations and deletions.
Files the engine writes (downloads, error notes, and the triggers it removes) are not counted
as they come: the count is taken again from the disk before a creation is refused (and only
raised by that, since creations booked meanwhile are not on disk yet), and the cap applies to
what clients create (a download is held by the byte quota instead).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

from wsgidav.dav_error import HTTP_INSUFFICIENT_STORAGE, DAVError

from engine.cluster_locks import ClusterLocks
from engine.database import Database, Session
from engine.nodes import Nodes
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

    def __init__(self, database: Database, accounts: Accounts, nodes: Nodes, user_locks: ClusterLocks,
                 storage_root: Path, min_free: int | None, max_files: int | None = None) -> None:
        """`user_locks`: one key per user, held around a change in a space and its booking."""
        self._database = database
        self._accounts = accounts
        self._nodes = nodes
        self._user_locks = user_locks
        self._storage_root = storage_root
        self._min_free = min_free or 0
        self._max_files = max_files

    def used(self, user: str) -> int:
        """Bytes stored for the user plus bytes reserved for writes in progress."""
        with self._database.read() as db:
            found = self._accounts.get(user)
            return (found.used_bytes if found else 0) + self._reserved(db, user)

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
        with self._database.read() as db:
            found = self._accounts.get(user)
            if found is None or found.quota_bytes is None:
                return None
            return max(0, found.quota_bytes - found.used_bytes - self._reserved(db, user))

    def disk_free(self) -> int:
        return shutil.disk_usage(self._storage_root).free

    def reserve(self, user: str, nbytes: int = 0, *, key: str | None = None) -> Reservation:
        """A reservation holding `nbytes` for `user`; QuotaExceeded if they do not fit. `key`
        names what it holds room for (a task), so that any node holding room for the same thing
        holds the one row: counted once, whichever node took it last."""
        reservation = Reservation(self, user, key)
        reservation.require(nbytes)
        return reservation

    def booking(self, user: str) -> AbstractContextManager[None]:
        """The user's lock, on every node: hold it from a change in the space to its booking.
        Take no path lock while holding it (path locks come first)."""
        return self._user_locks.locked(user)

    def charge(self, user: str, delta: int) -> None:
        """Book a change that needs no room first (something was removed or made smaller)."""
        with self.booking(user):
            self._accounts.add_used(user, delta)

    def recount(self, user: str, space: Path, extra_bytes: Callable[[], int] = lambda: 0) -> int:
        """Store the true figure: the space's files plus `extra_bytes()` kept elsewhere (dead
        properties); also recounts the files and folders. Bytes still reserved are not in
        the space (they wait in the temporary area), so they stay reservations."""
        with self.booking(user):
            used, entries = tree_usage(space)
            used += extra_bytes()
            with self._database.write() as db:
                self._accounts.set_used(user, used)
                if self._max_files is not None:
                    self._store_entries(db, user, entries)
        return used

    def forget_reservations_of_gone_nodes(self) -> None:
        """Drop this node's reservations from before it started and those of nodes gone for a
        lease; call it before this node reserves anything."""
        with self._database.write() as db:
            db.execute("delete from reservations where node = ? or node not in "
                       "(select name from nodes where seen_at >= ?)", [self._nodes.name, self._live_since()])

    def _live_since(self) -> float:
        return time.time() - self._nodes.lease

    def _reserved(self, db: Session, user: str) -> int:
        """Bytes held by the user's reservations on live nodes (this one is, while it asks)."""
        return db.execute(
            'select coalesce(sum(bytes), 0) from reservations where "user" = ? and '
            "(node = ? or node in (select name from nodes where seen_at >= ?))",
            [user, self._nodes.name, self._live_since()],
        ).fetchone()[0]

    def _locked_user(self, db: Session, user: str) -> tuple[int | None, int] | None:
        """(quota, used bytes) of the user, whose row stays locked until the transaction ends,
        so one check-and-book at a time runs for them on all nodes; None if there is no user.
        SQLite's write transaction excludes every other writer already."""
        row_lock = " for update" if self._database.dialect == "postgresql" else ""
        row = db.execute(f"select quota_bytes, used_bytes from users where name = ?{row_lock}", [user]).fetchone()
        return None if row is None else (row[0], row[1])

    # --- files and folders -------------------------------------------------

    def add_entries(self, user: str, count: int, space: Path) -> None:
        """Book `count` new files or folders (QuotaExceeded beyond storage.max_files)."""
        if self._max_files is None or not count:
            return
        with self._database.write() as db:
            self._locked_user(db, user)
            row = db.execute('select entries from entry_counts where "user" = ?', [user]).fetchone()
            current = None if row is None else row[0]
            if current is None or current + count > self._max_files:
                # Only ever raised by the walk: creations booked on any node may not be on disk yet.
                current = max(current or 0, tree_usage(space)[1])
                if current + count > self._max_files:
                    self._store_entries(db, user, current)
                    raise QuotaExceeded(
                        f"too many files and folders: at most {self._max_files} per user "
                        "(storage.max_files); delete some first"
                    )
            self._store_entries(db, user, current + count)

    def remove_entries(self, user: str, count: int) -> None:
        if self._max_files is None or not count:
            return
        with self._database.write() as db:
            db.execute('update entry_counts set entries = case when entries > ? then entries - ? else 0 end '
                       'where "user" = ?', [count, count, user])

    @staticmethod
    def _store_entries(db: Session, user: str, entries: int) -> None:
        db.execute('insert into entry_counts ("user", entries) values (?, ?) '
                   "on conflict (\"user\") do update set entries = excluded.entries", [user, entries])

    # --- reservations (see Reservation) -------------------------------------

    def _hold(self, reservation: Reservation, total: int, *, least: int | None = None, force: bool = False,
              whole: bool = False) -> int:
        """Set what `reservation` holds to `total`. Unless `force`, growth stops where the
        quota does, but not below `least` (QuotaExceeded if even that does not fit, or if it
        leaves less than storage.min_free on disk); `least` None: any amount will do; `whole`:
        all of `total` or no growth at all. A closed reservation holds nothing more."""
        user = reservation.user
        with reservation.lock:
            if reservation.closed or total == reservation.held:
                return reservation.held
            with self._database.write() as db:
                extra = total - reservation.held
                if extra > 0 and not force:
                    found = self._locked_user(db, user)
                    if found is not None and found[0] is not None:
                        quota, used = found
                        room = quota - used - self._reserved(db, user)
                        if extra > room and whole:
                            return reservation.held
                        if extra > room:
                            wanted = reservation.held + max(0, room)
                            if least is not None and wanted < least:
                                raise QuotaExceeded(
                                    f"quota of user {user!r} exceeded: {quota - max(0, room)} of "
                                    f"{quota} bytes stored or being written, {least - reservation.held} "
                                    "more needed; delete files or ask for a larger quota"
                                )
                            total, extra = wanted, wanted - reservation.held
                    if least is not None:
                        self.check_disk(extra)
                self._store_reservation(db, reservation, total)
            reservation.held = total
            return total

    def _store_reservation(self, db: Session, reservation: Reservation, total: int) -> None:
        if total:
            db.execute('insert into reservations (id, node, "user", bytes) values (?, ?, ?, ?) '
                       "on conflict (id) do update set bytes = excluded.bytes, node = excluded.node",
                       [reservation.id, self._nodes.name, reservation.user, total])
        else:
            db.execute("delete from reservations where id = ?", [reservation.id])

    def check_disk(self, extra: int) -> None:
        """QuotaExceeded unless `extra` more bytes leave storage.min_free on the disk."""
        free = self.disk_free()
        if extra > 0 and free - extra < self._min_free:
            raise QuotaExceeded(
                f"server disk almost full: {free} bytes free, {extra} needed and "
                f"{self._min_free} kept in reserve (storage.min_free); try again later"
            )

    def _settle(self, reservation: Reservation, delta: int) -> None:
        with self.booking(reservation.user), reservation.lock, self._database.write() as db:
            self._accounts.add_used(reservation.user, delta)
            if not reservation.closed and reservation.held:
                self._store_reservation(db, reservation, 0)
            reservation.held = 0
            reservation.closed = True


class Reservation:
    """Room held for one user's bytes on their way in: `settle` it once they are in place,
    else `release` it (also on leaving its `with` block; after `settle` that does nothing).
    Either closes it: a late claim (a download's other connection still finishing a read
    after a cancel) holds nothing, so no room stays held with no one to give it back."""

    def __init__(self, quota: Quota, user: str, key: str | None = None) -> None:
        self._quota = quota
        self.user = user
        self.id = key or secrets.token_hex(12)
        self.held = 0
        self.closed = False
        # A download's connections may grow one reservation at once.
        self.lock = threading.RLock()

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
