"""Persistent WebDAV locks and dead properties, kept in the fetchdrive SQLite database.

WsgiDAV's lock storage and property manager work on a dict (`self._dict`) and always write
whole values back. `SqliteMapping` is that dict, backed by a table, so both survive restarts
and `kill -9` (shelve/dbm files do not reliably). Keys are ref URLs, which our resources
prefix with the user name, so one user's locks and properties never meet another's.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable

from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageDict
from wsgidav.prop_man.property_manager import PropertyManager

from engine.database import Database


class SqliteMapping(MutableMapping):
    """A str -> picklable-value mapping stored in one two-column table."""

    def __init__(self, database: Database, table: str) -> None:
        self._database = database
        self._table = table
        with database.write() as db:
            db.execute(f"create table if not exists [{table}] (key text primary key, value blob not null)")

    def __getitem__(self, key: str) -> Any:
        with self._database.read() as db:
            row = db.execute(f"select value from [{self._table}] where key = ?", [key]).fetchone()
        if row is None:
            raise KeyError(key)
        return pickle.loads(row[0])

    def __setitem__(self, key: str, value: Any) -> None:
        with self._database.write() as db:
            db.execute(
                f"insert into [{self._table}] (key, value) values (?, ?) "
                "on conflict(key) do update set value = excluded.value",
                [key, pickle.dumps(value)],
            )

    def __delitem__(self, key: str) -> None:
        with self._database.write() as db:
            if db.execute(f"delete from [{self._table}] where key = ?", [key]).rowcount == 0:
                raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        with self._database.read() as db:
            return db.execute(f"select 1 from [{self._table}] where key = ?", [key]).fetchone() is not None

    def __iter__(self) -> Iterator[str]:
        with self._database.read() as db:
            keys = [row[0] for row in db.execute(f"select key from [{self._table}]")]
        return iter(keys)

    def __len__(self) -> int:
        with self._database.read() as db:
            return db.execute(f"select count(*) from [{self._table}]").fetchone()[0]

    def items(self):  # type: ignore[override]
        with self._database.read() as db:
            rows = db.execute(f"select key, value from [{self._table}]").fetchall()
        return [(key, pickle.loads(value)) for key, value in rows]

    def items_with_prefix(self, prefix: str) -> list[tuple[str, Any]]:
        """Entries whose key starts with `prefix`, in one indexed range query."""
        with self._database.read() as db:
            rows = db.execute(f"select key, value from [{self._table}] where key >= ? and key < ?",
                              [prefix, prefix + "\U0010ffff"]).fetchall()
        return [(key, pickle.loads(value)) for key, value in rows]

    def has_prefix(self, prefix: str) -> bool:
        with self._database.read() as db:
            return db.execute(f"select 1 from [{self._table}] where key >= ? and key < ? limit 1",
                              [prefix, prefix + "\U0010ffff"]).fetchone() is not None

    def sync(self) -> None:
        """Every write is already committed; WsgiDAV calls this after changes."""


class _ExclusiveLock:
    """Stands in for WsgiDAV's read/write lock: one re-entrant lock for both.

    WsgiDAV's lock storage upgrades a read lock to a write lock to purge an expired or unknown
    token (in `get`, also reached from `get_lock_list`); two threads doing that at once make
    its RWLock raise "Inevitable dead lock", a 500 on UNLOCK, LOCK or PUT. SQLite serialises
    the work anyway, so nothing is lost by one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def acquire_read(self, *, timeout: float | None = None) -> None:
        self._lock.acquire()

    acquire_write = acquire_read

    def release(self) -> None:
        self._lock.release()


class SqliteLockStorage(LockStorageDict):
    """WsgiDAV lock storage whose dict lives in SQLite."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._database = database
        self._lock = _ExclusiveLock()

    def open(self) -> None:
        self._dict = SqliteMapping(self._database, "dav_locks")

    def any_lock_under(self, ref_prefix: str) -> bool:
        """Is any lock (maybe expired) recorded for a ref URL starting with `ref_prefix`?"""
        if self._dict is None:
            self.open()
        return self._dict.has_prefix(f"URL2TOKEN:{ref_prefix}")

    def close(self) -> None:
        self._dict = None


class SqlitePropertyManager(PropertyManager):
    """WsgiDAV dead-property manager whose dict lives in SQLite."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self._database = database

    def _lazy_open(self) -> None:
        self._dict = SqliteMapping(self._database, "dav_properties")
        self._loaded = True

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
    """A LockManager that reports each released lock's root ref URL (trigger files wait for UNLOCK)."""

    def __init__(self, storage: LockStorageDict, on_release: Callable[[str], None]) -> None:
        super().__init__(storage)
        self._on_release = on_release

    def release(self, token: str) -> None:
        lock = self.get_lock(token)
        super().release(token)
        if lock:
            self._on_release(lock["root"])
