"""Moving the embedded SQLite database into PostgreSQL (`fetchdrive migrate-db --to URL`).

The target gets its schema by the normal migrations (`open_database`), so both databases hold
the same tables with the same columns; every table the source holds then moves row by row
with its values as they are (ids included), except those in `STAYS_BEHIND`, which describe
the processes that used a database rather than its data. The list of tables is read from the
source, so a table a new migration adds moves without a change here.

All of it happens in one transaction on the target, which must be empty: a failure anywhere
leaves it as it was. Identity columns (`tasks.id`, `deliveries.id`) get their sequences moved
past the ids copied, so a new task gets a new id.

The source must not change meanwhile: the move refuses while any other process (a server, a
command) has the embedded database open, and checks again just before it commits.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.database import SQLITE_FILE, Database, Session, masked_url, open_database
from engine.sqlite_database import SqliteDatabase

# schema_migrations: the target has its own record of the migrations it ran.
# nodes: the servers that used the source; the target's nodes register themselves.
# reservations (migration 3): room held for writes in progress by the nodes that ran them.
STAYS_BEHIND = frozenset({"schema_migrations", "nodes", "reservations"})
# PostgreSQL takes at most 65535 parameters in one statement.
_MAX_PARAMETERS = 60_000
_ROWS_PER_INSERT = 500


class MoveError(RuntimeError):
    """The move cannot happen or failed; str(e) is one line that says why and what to do."""


@dataclass(frozen=True)
class Moved:
    """What one table handed over: its name and how many rows."""

    table: str
    rows: int


def sqlite_in_use(path: Path) -> bool:
    """Whether another process has the SQLite database at `path` open.

    In WAL mode (the only one fetchdrive uses) every connection holds a shared lock on the
    "DMS" byte of the `-shm` file for as long as it is open, and the kernel drops it when
    the process ends, even by `kill -9` (https://www.sqlite.org/walformat.html, 2.3.1 and
    os_unix.c's UNIX_SHM_DMS: byte 128). Asking whether an exclusive lock there would be
    refused answers the question without taking any lock; this process's own locks do
    not count.
    """
    try:
        descriptor = os.open(f"{path}-shm", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        flock = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, 128, 1, 0)
        held = fcntl.fcntl(descriptor, fcntl.F_GETLK, flock)
        return struct.unpack("hhqqi", held)[0] != fcntl.F_UNLCK
    finally:
        os.close(descriptor)


def move_embedded(root: Path, url: str) -> list[Moved]:
    """Move the embedded database of `storage.root` = `root` into the PostgreSQL database at
    `url`; what moved, table by table. MoveError (or DatabaseError for a target that cannot
    be reached) says why not, without the URL's password."""
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise MoveError(f"--to takes the URL of a PostgreSQL database (postgresql://...), not {masked_url(url)!r}")
    path = root / SQLITE_FILE
    if not path.is_file():
        raise MoveError(f"there is no embedded database to move at {path} (storage.root)")
    if sqlite_in_use(path):
        raise MoveError(f"{path} is open in another process: stop the server (and every other fetchdrive "
                        "command on it) first, then run migrate-db again")
    target = open_database(url, root)
    try:
        source = SqliteDatabase(path)
        try:
            return move(source, target)
        finally:
            source.close()
    finally:
        target.close()


def tables(source: SqliteDatabase) -> list[str]:
    """The source's tables that move, in the order the migrations made them."""
    with source.read() as db:
        names = [row["name"] for row in db.query(
            "select name from sqlite_master where type = 'table' and name not like 'sqlite\\_%' escape '\\' "
            "order by rowid")]
    return [name for name in names if name not in STAYS_BEHIND]


def move(source: SqliteDatabase, target: Database) -> list[Moved]:
    """Copy every table of the embedded database `source` into the empty
    PostgreSQL database `target`, in one transaction; MoveError if the target holds data or
    another process opened the source meanwhile."""
    names = tables(source)
    # write(): the source's write lock is held throughout, so no writer changes it midway.
    with source.write() as reading, target.write() as writing:
        occupied = [name for name in names if writing.execute(f'select 1 from "{name}" limit 1').fetchone()]
        if occupied:
            raise MoveError(
                f"the target database already holds data (in {', '.join(occupied)}); "
                "migrate-db moves into an empty database only: create a new one and give its URL")
        moved = [Moved(name, _copy(reading.query(f'select * from "{name}"'), name, writing)) for name in names]
        _move_identities_past_copied_ids(writing)
        if sqlite_in_use(source.path):
            raise MoveError(f"another process opened {source.path} during the move; nothing was moved: "
                            "stop the server and every fetchdrive command, then run migrate-db again")
    return moved


def _copy(rows: Iterable[dict[str, Any]], table: str, writing: Session) -> int:
    """Insert `rows` into `table` in multi-row statements; the number of rows. MoveError if
    PostgreSQL refuses one (the transaction then rolls back)."""
    import psycopg  # only this command meets PostgreSQL's errors here

    count = 0
    remaining = iter(rows)
    first = next(remaining, None)
    if first is None:
        return 0
    names = list(first)
    quoted = ", ".join(f'"{name}"' for name in names)
    one_row = "(" + ", ".join("?" for _ in names) + ")"
    per_insert = max(1, min(_ROWS_PER_INSERT, _MAX_PARAMETERS // len(names)))
    for chunk in _chunks(itertools.chain([first], remaining), per_insert):
        try:
            # overriding system value: ids are kept where the column is an identity.
            writing.execute(f'insert into "{table}" ({quoted}) overriding system value values '
                            + ", ".join(one_row for _ in chunk),
                            [row[name] for row in chunk for name in names])
        except psycopg.Error as error:
            # The first line only: the lines after it may quote whole rows.
            reason = (str(error).strip() or type(error).__name__).splitlines()[0]
            raise MoveError(f"PostgreSQL refused a row of {table} ({reason}); nothing was moved") from None
        count += len(chunk)
    return count


def _chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def _move_identities_past_copied_ids(writing: Session) -> None:
    identities = writing.query(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = current_schema() and is_identity = 'YES'")
    for row in list(identities):
        table, column = row["table_name"], row["column_name"]
        writing.execute(f'select setval(pg_get_serial_sequence(?, ?), coalesce(max("{column}"), 0) + 1, false) '
                        f'from "{table}"', [f'"{table}"', column])
