"""Persistent WebDAV locks and dead properties, kept in the fetchdrive database.

WsgiDAV's lock storage and property manager work on a dict (`self._dict`) and always write
whole values back. `SqliteMapping` is that dict, backed by a table, so both survive restarts
and `kill -9` (shelve/dbm files do not reliably). Keys are ref URLs, which our resources
prefix with the user name, so one user's locks and properties never meet another's.

Dead properties are storage a user makes the server keep: the bytes of each property's
name and value count in the owner's quota (`MeteredMapping`), and one property is capped at
`storage.max_property_bytes`. A lock's owner is capped at `storage.max_lock_owner_bytes` and
a user's live locks at `storage.max_locks`.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager
from typing import Any, Callable

from wsgidav.dav_error import HTTP_BAD_REQUEST, DAVError
from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageDict
from wsgidav.prop_man.property_manager import PropertyManager

from engine.cluster_locks import ClusterLocks
from engine.database import Database
from provider.quota import Quota, QuotaExceeded


class SqliteMapping(MutableMapping):
    """A str -> picklable-value mapping stored in one two-column table (`engine.schema` makes
    it): the `engine.repository.KeyValueTable`."""

    def __init__(self, database: Database, table: str) -> None:
        self._database = database
        self._table = table

    def __getitem__(self, key: str) -> Any:
        with self._database.read() as db:
            row = db.execute(f"select value from {self._table} where key = ?", [key]).fetchone()
        if row is None:
            raise KeyError(key)
        return pickle.loads(row[0])

    def __setitem__(self, key: str, value: Any) -> None:
        with self._database.write() as db:
            db.execute(
                f"insert into {self._table} (key, value) values (?, ?) "
                "on conflict(key) do update set value = excluded.value",
                [key, pickle.dumps(value)],
            )

    def __delitem__(self, key: str) -> None:
        with self._database.write() as db:
            if db.execute(f"delete from {self._table} where key = ?", [key]).rowcount == 0:
                raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        with self._database.read() as db:
            return db.execute(f"select 1 from {self._table} where key = ?", [key]).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        with self._database.read() as db:
            keys = [row[0] for row in db.execute(f"select key from {self._table}")]
        return iter(keys)

    def __len__(self) -> int:
        with self._database.read() as db:
            return db.execute(f"select count(*) from {self._table}").fetchone()[0]

    def items(self):  # type: ignore[override]
        with self._database.read() as db:
            rows = db.execute(f"select key, value from {self._table}").fetchall()
        return [(key, pickle.loads(value)) for key, value in rows]

    def items_with_prefix(self, prefix: str) -> list[tuple[str, Any]]:
        """Entries whose key starts with `prefix`, in one indexed range query."""
        with self._database.read() as db:
            rows = db.execute(f"select key, value from {self._table} where key >= ? and key < ?",
                              [prefix, prefix + "\U0010ffff"]).fetchall()
        return [(key, pickle.loads(value)) for key, value in rows]

    def has_prefix(self, prefix: str) -> bool:
        with self._database.read() as db:
            return db.execute(f"select 1 from {self._table} where key >= ? and key < ? limit 1",
                              [prefix, prefix + "\U0010ffff"]).fetchone() is not None

    def sync(self) -> None:
        """Every write is already committed; WsgiDAV calls this after changes."""


def properties_size(properties: dict[str, bytes] | None) -> int:
    """What a resource's dead properties cost in the quota: the bytes of names and values."""
    return sum(len(name.encode()) + len(value) for name, value in (properties or {}).items())


class MeteredMapping(SqliteMapping):
    """The dead-property table, booking every change in the owning user's quota: room for
    growth is reserved before the write (507 when there is none), shrinkage is given back."""

    def __init__(self, database: Database, table: str, quota: Quota, owner: Callable[[str], str]) -> None:
        super().__init__(database, table)
        self._quota = quota
        self._owner = owner

    def _size_at(self, key: str) -> int:
        return properties_size(self.get(key))

    def __setitem__(self, key: str, value: dict[str, bytes]) -> None:
        owner = self._owner(key)
        with self._quota.booking(owner):  # the size read is the size replaced, on every node
            delta = properties_size(value) - self._size_at(key)
            with self._quota.reserve(owner, max(0, delta)) as reservation:
                super().__setitem__(key, value)
                reservation.settle(delta)

    def __delitem__(self, key: str) -> None:
        owner = self._owner(key)
        with self._quota.booking(owner):
            size = self._size_at(key)
            super().__delitem__(key)
            self._quota.charge(owner, -size)

    def rename(self, old: str, new: str) -> None:
        """Move one entry to another key of the same user (replacing what is there)."""
        owner = self._owner(new)
        with self._quota.booking(owner):
            replaced = self._size_at(new)
            with self._database.write() as db:
                db.execute(f"delete from {self._table} where key = ?", [new])
                db.execute(f"update {self._table} set key = ? where key = ?", [new, old])
            self._quota.charge(owner, -replaced)

    def bytes_under(self, prefix: str) -> int:
        return sum(properties_size(value) for _key, value in self.items_with_prefix(prefix))


class _ExclusiveLock:
    """Stands in for WsgiDAV's read/write lock: one re-entrant lock for both, held on every
    node (engine/cluster_locks.py), so a LOCK on one node and a conflicting LOCK or a write on
    another take turns.

    WsgiDAV's lock storage upgrades a read lock to a write lock to purge an expired or unknown
    token (in `get`, also reached from `get_lock_list`); two threads doing that at once make
    its RWLock raise "Inevitable dead lock", a 500 on UNLOCK, LOCK or PUT. The database
    serialises the work anyway, so nothing is lost by one lock.
    """

    def __init__(self, locks: ClusterLocks) -> None:
        self._locks = locks
        self._held: list[AbstractContextManager[None]] = []

    def acquire_read(self, *, timeout: float | None = None) -> None:
        held = self._locks.locked("dav-locks")
        held.__enter__()
        self._held.append(held)

    acquire_write = acquire_read

    def release(self) -> None:
        self._held.pop().__exit__(None, None, None)


class SqliteLockStorage(LockStorageDict):
    """WsgiDAV lock storage whose dict lives in the database."""

    def __init__(self, database: Database, locks: ClusterLocks) -> None:
        """`locks`: the namespace of the DAV lock storage's one lock (see _ExclusiveLock)."""
        super().__init__()
        self._database = database
        self._lock = _ExclusiveLock(locks)

    def open(self) -> None:
        self._dict = SqliteMapping(self._database, "dav_locks")

    def any_lock_under(self, ref_prefix: str) -> bool:
        """Is any lock (maybe expired) recorded for a ref URL starting with `ref_prefix`?"""
        if self._dict is None:
            self.open()
        return self._dict.has_prefix(f"URL2TOKEN:{ref_prefix}")

    def live_locks_under(self, ref_prefix: str) -> int:
        """How many unexpired locks have a root starting with `ref_prefix`."""
        if self._dict is None:
            self.open()
        tokens = {token for _key, listed in self._dict.items_with_prefix(f"URL2TOKEN:{ref_prefix}") for token in listed}
        now = time.time()
        count = 0
        for token in tokens:
            lock = self._dict.get(token)
            if lock is not None and not 0 <= float(lock["expire"]) < now:
                count += 1
        return count

    def remove_locks_under(self, ref_url: str) -> None:
        """Forget every lock rooted at `ref_url` or below it (a removed user's space)."""
        self._lock.acquire_write()
        try:
            if self._dict is None:
                self.open()
            root = ref_url.rstrip("/")
            for key, tokens in self._dict.items_with_prefix(f"URL2TOKEN:{root}"):
                locked = key[len("URL2TOKEN:"):]
                if locked == root or locked.startswith(root + "/"):
                    for token in tokens:
                        self._dict.pop(token, None)
                    del self._dict[key]
        finally:
            self._lock.release()

    def close(self) -> None:
        self._dict = None


class SqlitePropertyManager(PropertyManager):
    """WsgiDAV dead-property manager whose dict lives in the database, metered by the quota."""

    def __init__(self, database: Database, quota: Quota, owner: Callable[[str], str], max_property_bytes: int | None) -> None:
        """`owner`: the user whose space a ref URL is in."""
        super().__init__()
        self._database = database
        self._quota = quota
        self._owner = owner
        self._max_property_bytes = max_property_bytes

    def _lazy_open(self) -> None:
        self._dict = MeteredMapping(self._database, "dav_properties", self._quota, self._owner)
        self._loaded = True

    def write_property(self, norm_url, name, property_value, dry_run=False, environ=None):
        size = properties_size({name: property_value})
        if self._max_property_bytes is not None and size > self._max_property_bytes:
            raise QuotaExceeded(
                f"a dead property (name and value) may hold at most {self._max_property_bytes} bytes "
                f"(storage.max_property_bytes); this one has {size}"
            )
        if dry_run:
            # WsgiDAV tries every property of a PROPPATCH first: all are stored or none.
            room = self._quota.quota_room(self._owner(norm_url))
            if room is not None and size > room + properties_size(self._current(norm_url, name)):
                raise QuotaExceeded(f"quota exceeded: {size} bytes of properties do not fit in the {room} bytes left")
            return
        super().write_property(norm_url, name, property_value, dry_run, environ)

    def _current(self, norm_url: str, name: str) -> dict[str, bytes]:
        value = self.get_property(norm_url, name)
        return {} if value is None else {name: value}

    def move_properties(self, src_url, dest_url, with_children, environ=None):
        """What was at `dest_url` (and below it, `with_children`) makes way for what is at
        `src_url` (and below): another client may have set properties there since WsgiDAV
        deleted the destination. A move keeps the bytes (within one user's space), so it needs
        no room."""
        self._lock.acquire_write()
        try:
            self._remove_under(dest_url, with_children)
            for key in self._keys_under(src_url, with_children):
                self._dict.rename(key, dest_url + key[len(src_url):])
        finally:
            self._lock.release()

    def copy_properties(self, src_url, dest_url, environ=None):
        """The properties at `dest_url` become a copy of those at `src_url`: none if it has
        none (WsgiDAV's keeps what a file overwritten by the COPY had)."""
        self._lock.acquire_write()
        try:
            if not self._loaded:
                self._lazy_open()
            properties = self._dict.get(src_url)
            if properties:
                self._dict[dest_url] = properties
            else:
                self._remove_under(dest_url, with_children=False)
        finally:
            self._lock.release()

    def remove_properties_under(self, ref_url: str) -> None:
        """Remove the dead properties of `ref_url` and of everything below it (WsgiDAV's folder
        DELETE removes the folder's own only, leaving its members' counted in the quota)."""
        self._lock.acquire_write()
        try:
            self._remove_under(ref_url, with_children=True)
        finally:
            self._lock.release()

    def _keys_under(self, ref_url: str, with_children: bool) -> list[str]:
        """The keys of `ref_url` and, `with_children`, of everything below it."""
        if not self._loaded:
            self._lazy_open()
        under = ref_url.rstrip("/") + "/"
        return [key for key, _value in self._dict.items_with_prefix(ref_url.rstrip("/"))
                if key == ref_url or (with_children and key.startswith(under))]

    def _remove_under(self, ref_url: str, with_children: bool) -> None:
        for key in self._keys_under(ref_url, with_children):
            del self._dict[key]

    def bytes_under(self, ref_prefix: str) -> int:
        """Quota bytes of the dead properties of every ref URL starting with `ref_prefix`."""
        if not self._loaded:
            self._lazy_open()
        return self._dict.bytes_under(ref_prefix)

    def _close(self) -> None:
        self._dict = None
        self._loaded = False

    def properties_under(self, ref_prefix: str) -> dict[str, dict[str, Any]]:
        """Dead properties of every ref URL starting with `ref_prefix`, in one query."""
        if not self._loaded:
            self._lazy_open()
        return dict(self._dict.items_with_prefix(ref_prefix))

    def __repr__(self) -> str:
        return "SqlitePropertyManager"


class NotifyingLockManager(LockManager):
    """A LockManager that reports each released lock's root ref URL (trigger files wait for
    UNLOCK) and holds each user to the lock caps."""

    def __init__(self, storage: SqliteLockStorage, on_release: Callable[[str], None], *,
                 user_prefix: Callable[[str], str], max_owner_bytes: int | None, max_locks: int | None) -> None:
        """`user_prefix`: the ref-URL prefix of a principal's space."""
        super().__init__(storage)
        # The storage's lock, held on every node, instead of WsgiDAV's in-process one: a
        # conflict check and the lock it grants are one step across nodes.
        self._lock = storage._lock
        self._on_release = on_release
        self._user_prefix = user_prefix
        self._max_owner_bytes = max_owner_bytes
        self._max_locks = max_locks

    def acquire(self, *, url, lock_type, lock_scope, lock_depth, lock_owner, timeout, principal, token_list):
        if self._max_owner_bytes is not None and len(lock_owner or b"") > self._max_owner_bytes:
            raise DAVError(HTTP_BAD_REQUEST, f"the lock owner has {len(lock_owner)} bytes; at most "
                                             f"{self._max_owner_bytes} are kept (storage.max_lock_owner_bytes)")
        self._lock.acquire_write()  # no two LOCKs of one user both take the last place
        try:
            if self._max_locks is not None and \
                    self.storage.live_locks_under(self._user_prefix(principal)) >= self._max_locks:
                raise QuotaExceeded(f"too many locks: at most {self._max_locks} per user "
                                    "(storage.max_locks); unlock files first")
            return super().acquire(url=url, lock_type=lock_type, lock_scope=lock_scope, lock_depth=lock_depth,
                                   lock_owner=lock_owner, timeout=timeout, principal=principal, token_list=token_list)
        finally:
            self._lock.release()

    def release(self, token: str) -> None:
        lock = self.get_lock(token)
        super().release(token)
        if lock:
            self._on_release(lock["root"])
