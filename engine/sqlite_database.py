"""The embedded database: one SQLite file under `storage.root` (`database.url: sqlite:`).

Web threads and download workers share a single connection in WAL mode; every access goes
through `SqliteDatabase.lock`, so writes are serialised in one place and a `kill -9` at any
moment leaves the last committed state. Several processes may open one file (a CLI command
beside the server): SQLite's own write lock orders them.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from engine.database import SQLITE_URL, Database
from engine.schema import MIGRATIONS, PRE_VERSIONING_TASK_COLUMNS, Migration


class SqliteSession:
    """`Session` on the shared connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        return self._connection.execute(sql, list(params))

    def query(self, sql: str, params: Iterable[Any] = ()) -> Iterator[dict[str, Any]]:
        cursor = self.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return (dict(zip(names, row)) for row in cursor)


class SqliteDatabase(Database):
    """The embedded SQLite file, guarded by one re-entrant lock."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self.url = SQLITE_URL
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
        self._session = SqliteSession(self._conn)
        self._savepoints = itertools.count()
        self._readers = threading.local()
        self._migrate(migrations)

    @contextmanager
    def read(self) -> Iterator[SqliteSession]:
        with self.lock:
            yield self._session

    def read_committed(self, sql: str, params: Iterable[Any]) -> list[tuple]:
        # This thread's own read-only connection: no shared lock, so hot paths do not queue.
        reader = getattr(self._readers, "conn", None)
        if reader is None:
            reader = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
            self._readers.conn = reader
        return reader.execute(sql, list(params)).fetchall()

    @contextmanager
    def write(self) -> Iterator[SqliteSession]:
        """The outer transaction begins IMMEDIATE: it takes the write lock at once (waiting up
        to the busy timeout), because a deferred one that reads first and writes later fails
        at once with "database is locked" when another process (a CLI command beside the
        server) committed in between; SQLite cannot wait for that case."""
        with self.lock:
            if self._conn.in_transaction:
                name = f"nested_{next(self._savepoints)}"
                self._conn.execute(f"savepoint {name}")
                try:
                    yield self._session
                except BaseException:
                    self._conn.execute(f"rollback to {name}")
                    self._conn.execute(f"release {name}")
                    raise
                self._conn.execute(f"release {name}")
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._session
            except BaseException:
                self._conn.rollback()
                raise
            self._conn.execute("COMMIT")

    def _lock_for_migration(self, session: SqliteSession) -> None:
        """`write()` began IMMEDIATE: it holds the file's write lock already."""

    def _adopt_unversioned(self, session: SqliteSession) -> None:
        columns = {row[1] for row in session.execute("pragma table_info(tasks)")}
        if not columns:
            return
        for name, sql_type, fill in PRE_VERSIONING_TASK_COLUMNS:
            if name not in columns:
                session.execute(f"alter table tasks add column {name} {sql_type}")
                if fill:
                    session.execute(fill)

    def __str__(self) -> str:
        return f"embedded SQLite file {self.path}"

    def close(self) -> None:
        with self.lock:
            self._conn.close()
