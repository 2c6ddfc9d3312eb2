"""The database behind every table fetchdrive keeps, whichever engine holds it.

`open_database(url, root)` picks the engine from `database.url`: `sqlite:` is the embedded
file `root/fetchdrive.sqlite` (`engine.sqlite_database`), `postgresql://...` a PostgreSQL
server shared by several nodes (`engine.postgres_database`). Both offer the same small
interface, so the stores above write their SQL once:

- `read()` and `write()` are context managers yielding a `Session` with `execute(sql, params)`
  (a DB-API cursor: fetchone, fetchall, rowcount, iteration) and `query(sql, params)` (rows as
  dicts). `write()` is one transaction; a nested `write()` is a savepoint of the outer one.
- `read_committed(sql, params)` answers from committed data without queueing behind writers.
- SQL uses `?` placeholders and the subset of SQLite 3.40 and PostgreSQL 15 that both read the
  same way: `"user"` always quoted, `on conflict ... do`, `returning`, `is not distinct from`,
  `case when` for two-argument max/min. Where a statement must differ, code branches on
  `Database.dialect` in one small place.

Opening a database brings its schema up to date (`engine.schema`): the missing migrations in
one transaction which first takes a lock that a second node starting at once waits for, then
re-reads the version, so the two migrate once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from engine.schema import MIGRATIONS, Migration, pending

SQLITE_URL = "sqlite:"
SQLITE_FILE = "fetchdrive.sqlite"


class DatabaseError(RuntimeError):
    """`database.url` names no database this release can open; str(e) says which and why
    (without the URL's password)."""


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Sequence[Any] | None: ...
    def fetchall(self) -> list[Sequence[Any]]: ...
    def __iter__(self) -> Any: ...


class Session(Protocol):
    """What `read()` and `write()` yield."""

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Cursor: ...
    def query(self, sql: str, params: Iterable[Any] = ()) -> Iterable[dict[str, Any]]: ...


class Database(ABC):
    """One database of fetchdrive: its URL and dialect, sessions, and its migrations."""

    url: str
    dialect: str  # "sqlite" | "postgresql"

    @abstractmethod
    def read(self) -> AbstractContextManager[Session]:
        """A session for reads (in this thread's open transaction, if there is one)."""

    @abstractmethod
    def write(self) -> AbstractContextManager[Session]:
        """One transaction; nested calls become savepoints of the outer one."""

    @abstractmethod
    def read_committed(self, sql: str, params: Iterable[Any]) -> list[tuple]:
        """Rows of committed data, read without waiting for writers: for hot paths (every
        request's password check). Inside a transaction, use `read()`."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _lock_for_migration(self, session: Session) -> None:
        """Inside the migration's transaction: wait until no other process migrates."""

    def _adopt_unversioned(self, session: Session) -> None:
        """Before migration 1 on a database without versions: bring tables that an older
        release made up to migration 1 (only the embedded database had such releases)."""

    def _translate_ddl(self, statement: str) -> str:
        return statement

    def _migrate(self, migrations: tuple[Migration, ...]) -> None:
        """Apply the migrations this database lacks, all in one transaction."""
        with self.write() as session:
            self._lock_for_migration(session)
            session.execute(self._translate_ddl(
                "create table if not exists schema_migrations (version integer not null primary key, "
                "summary text not null, applied_at real not null)"))
            recorded = session.execute("select coalesce(max(version), 0) from schema_migrations").fetchone()[0]
            if recorded == 0:
                self._adopt_unversioned(session)
            for migration in pending(recorded, migrations):
                for statement in migration.statements:
                    session.execute(self._translate_ddl(statement))
                session.execute("insert into schema_migrations (version, summary, applied_at) values (?, ?, ?)",
                                [migration.version, migration.summary, time.time()])

    def __str__(self) -> str:
        """What a log line may say of it: its URL without a password."""
        return masked_url(self.url)


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unclosed "["
        return None


def url_passwords(url: str) -> set[str]:
    """Every spelling of the password in `url`'s userinfo (as written, percent-decoded), also
    of a URL too malformed to parse; empty if it has none."""
    netloc = url.partition("://")[2].split("/", 1)[0]
    written = {netloc.rpartition("@")[0].partition(":")[2]}
    parts = _split(url)
    if parts and parts.password:
        written.add(parts.password)
    return (written | {unquote(password) for password in written}) - {""}


def masked_url(url: str) -> str:
    """`url` fit for a log line: a password in its userinfo replaced by `***`."""
    parts = _split(url)
    if parts is None:  # nothing of it is shown: it may hold a password
        return f"{url.partition(':')[0]}:(a URL that cannot be parsed)"
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def open_database(url: str, root: Path, migrations: tuple[Migration, ...] = MIGRATIONS) -> Database:
    """The database `database.url` names, its schema up to date; DatabaseError if it cannot
    be opened (a one-line reason), SchemaError if a newer release wrote it."""
    scheme = url.partition(":")[0].lower()
    if url == SQLITE_URL:
        from engine.sqlite_database import SqliteDatabase

        return SqliteDatabase(root / SQLITE_FILE, migrations)
    if scheme in ("postgresql", "postgres"):
        from engine.postgres_database import PostgresDatabase

        return PostgresDatabase(url, migrations)
    raise DatabaseError(f"database.url {masked_url(url)!r} is neither {SQLITE_URL!r} nor postgresql://...")
