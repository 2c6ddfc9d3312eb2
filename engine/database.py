"""The one SQLite database under `storage.root` (users, tasks, catalog, DAV locks and properties).

Web threads and download workers share a single connection in WAL mode; every access goes
through `Database.lock`, so writes are serialised in one place and a `kill -9` at any moment
leaves the last committed state.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils


class Database:
    """A sqlite-utils database guarded by one re-entrant lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: statements autocommit; `write()` opens explicit transactions.
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a process crash (kill -9); only a power cut may lose
        # the last transactions, never corrupt the file.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.lock = threading.RLock()
        self.db = sqlite_utils.Database(self._conn)
        self._readers = threading.local()

    @contextmanager
    def read(self) -> Iterator[sqlite_utils.Database]:
        with self.lock:
            yield self.db

    def read_committed(self, sql: str, params: list) -> list[tuple]:
        """Rows from this thread's own read-only connection: no shared lock, so hot paths
        (every request's password check) do not queue behind each other. Sees committed
        data only; use `read()` inside a transaction."""
        reader = getattr(self._readers, "conn", None)
        if reader is None:
            reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
            self._readers.conn = reader
        return reader.execute(sql, params).fetchall()

    @contextmanager
    def write(self) -> Iterator[sqlite_utils.Database]:
        """One transaction; nested calls become savepoints of the outer one.

        The outer transaction begins IMMEDIATE: it takes the write lock at once (waiting up
        to the busy timeout), because a deferred one that reads first and writes later fails
        at once with "database is locked" when another process (a CLI command beside the
        server) committed in between; SQLite cannot wait for that case.
        """
        with self.lock:
            if self._conn.in_transaction:
                with self.db.atomic():
                    yield self.db
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._conn.close()
