"""The one SQLite database under `storage.root` (users, tasks, catalog, DAV locks and properties).

Web threads and download workers share a single connection in WAL mode; every access goes
through `Database.lock`, so writes are serialised in one place and a `kill -9` at any moment
leaves the last committed state. Opening it brings its schema up to date (`engine.schema`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

from engine.schema import MIGRATIONS, PRE_VERSIONING_TASK_COLUMNS, Migration, pending


class Database:
    """A sqlite-utils database guarded by one re-entrant lock."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
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
        self._migrate(migrations)

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

    def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        """Apply the migrations this database lacks, all in one transaction. `write()` takes
        the write lock before the version is read, so of two processes starting at once the
        second sees the first one's work and applies nothing."""
        with self.write() as db:
            db.execute("create table if not exists schema_migrations (version integer primary key, "
                       "summary text not null, applied_at real not null)")
            recorded = db.execute("select coalesce(max(version), 0) from schema_migrations").fetchone()[0]
            if recorded == 0 and "tasks" in db.table_names():
                self._adopt_pre_versioning_tasks(db)
            for migration in pending(recorded, migrations):
                for statement in migration.statements:
                    db.execute(statement)
                db.execute("insert into schema_migrations (version, summary, applied_at) values (?, ?, ?)",
                           [migration.version, migration.summary, time.time()])

    @staticmethod
    def _adopt_pre_versioning_tasks(db: sqlite_utils.Database) -> None:
        columns = db["tasks"].columns_dict
        for name, sql_type, fill in PRE_VERSIONING_TASK_COLUMNS:
            if name not in columns:
                db.execute(f"alter table tasks add column {name} {sql_type}")
                if fill:
                    db.execute(fill)

    def close(self) -> None:
        with self.lock:
            self._conn.close()
