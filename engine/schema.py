"""The database schema as numbered migrations, and the rules for applying them.

Every table fetchdrive keeps (users, tasks, catalog, devices and deliveries, events, shares,
DAV locks and dead properties) is created here and nowhere else. A migration is applied once:
the database records each applied number in `schema_migrations`, and start-up applies the
missing ones, in order, in one write transaction that first takes the write lock and then
re-reads the recorded version, so two processes starting at once migrate once.

Migrations are history: once released, one is never edited; a change is a new number.
Migration 1 is the schema of the last release before versioning, written with IF NOT EXISTS
so that such a database (its tables present, no version) is adopted as it stands; columns
that older releases lacked are added by `PRE_VERSIONING_TASK_COLUMNS` before it runs.

The statements are SQLite's DDL, which PostgreSQL applies with the same numbers and
summaries after `engine.postgres_database.postgres_ddl` has translated their types
(`integer primary key` -> identity, `integer` -> `bigint`, `real` -> `double precision`,
`blob` -> `bytea`). Columns named `user`, a reserved word in PostgreSQL, are always quoted
(quoting them in migration 1 changed nothing that SQLite stores or reads).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, TypeVar

R = TypeVar("R")


class SchemaError(RuntimeError):
    """The database cannot be used by this release; str(e) says why and what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the tables of the last release before versioning", (
        """create table if not exists users (
            name text primary key,
            password_hash text not null,
            quota_bytes integer,
            used_bytes integer not null default 0,
            created_at real)""",
        """create table if not exists tasks (
            id integer primary key,
            "user" text not null,
            source text not null,
            kind text not null,
            folder text not null,
            trigger_path text,
            state text not null,
            display_name text not null,
            sha256_expected text,
            filename_hint text,
            bytes_done integer,
            bytes_total integer,
            etag text,
            last_modified text,
            final_url text,
            temp_path text,
            attempts integer,
            next_attempt_at real,
            first_failure_at real,
            error text,
            path text,
            sha256 text,
            instant integer,
            segments text,
            created_at real,
            updated_at real,
            finished_at real,
            fetched_url text,
            superseded_by integer,
            origin_headers text,
            send_to text)""",
        'create index if not exists idx_tasks_user_state on tasks ("user", state)',
        "create index if not exists idx_tasks_state_next_attempt_at on tasks (state, next_attempt_at)",
        'create index if not exists idx_tasks_user_trigger_path on tasks ("user", trigger_path)',
        'create index if not exists idx_tasks_user_id on tasks ("user", id)',
        """create table if not exists catalog (
            id text primary key,
            url text,
            sha256 text,
            filename text,
            origin text,
            added_at real)""",
        """create table if not exists events (
            "user" text not null,
            seq integer not null,
            kind text not null,
            data text not null,
            created_at real,
            primary key ("user", seq))""",
        # last_seq: the user's newest event; floor: the newest one dropped from the history
        'create table if not exists event_users ("user" text primary key, last_seq integer, floor integer)',
        """create table if not exists devices (
            "user" text not null,
            name text not null,
            created_at real,
            last_seen real,
            primary key ("user", name))""",
        """create table if not exists deliveries (
            id integer primary key,
            "user" text not null,
            device text not null,
            path text not null,
            created_at real,
            delivered_at real)""",
        'create index if not exists idx_deliveries_user_device_delivered_at on deliveries ("user", device, delivered_at)',
        """create table if not exists shares (
            id text primary key,
            owner text not null,
            path text not null,
            token_sha256 text not null,
            password_hash text,
            created_at real not null,
            expires_at real)""",
        "create unique index if not exists idx_shares_token_sha256 on shares (token_sha256)",
        "create index if not exists idx_shares_owner on shares (owner)",
        "create table if not exists dav_locks (key text primary key, value blob not null)",
        "create table if not exists dav_properties (key text primary key, value blob not null)",
    )),
    Migration(2, "nodes sharing the database, and the node holding each running task", (
        # seen_at: the node's last heartbeat; one unseen for engine.lease seconds is gone.
        "create table nodes (name text primary key, started_at real not null, seen_at real not null)",
        # node: who runs the task; lease_until: when others may take it over unless renewed.
        "alter table tasks add column node text",
        "alter table tasks add column lease_until real",
    )),
    Migration(3, "quota reservations, file counts and login throttling shared by every node", (
        # Room held for bytes on their way in, one row per reservation; it counts while its
        # node is alive (provider/quota.py). Only writes in progress have a row, so the table
        # stays small enough to need no index beyond its key: each PUT adds and removes one.
        """create table reservations (id text primary key, node text not null, "user" text not null,
            bytes bigint not null)""",
        # Files and folders per user for storage.max_files; a row appears with the first count.
        'create table entry_counts ("user" text primary key, entries bigint not null)',
        # Consecutive wrong passwords per (user name or share, address) (provider/login_throttle.py).
        """create table login_failures (name text not null, address text not null, failures integer not null,
            locked_until double precision not null, primary key (name, address))""",
    )),
    Migration(4, "when each device's event stream, on whichever node, last said it is open", (
        # online_until: the stream renews it every events.keepalive seconds and clears it on closing.
        "alter table devices add column online_until real",
    )),
    Migration(5, "a value every node reads to forget the passwords it verified before a change", (
        # One row; a password change or a user's removal writes a new random value
        # (provider/credential_cache.py).
        "create table credential_generation (id integer primary key, value text not null)",
    )),
    Migration(6, "where a task's file is being published, for a restart after a kill to find it", (
        # Set just before the link (or a folder's move) into the user's folder, cleared when the
        # task is marked done (engine/delivery.py).
        "alter table tasks add column publishing_to text",
    )),
)

# `other` is another task of the same request as `tasks`: same user, source, folder, trigger
# (or none: the API) and filename=.
SAME_REQUEST = (
    'other."user" = tasks."user" and other.source = tasks.source and other.folder = tasks.folder '
    "and other.trigger_path is not distinct from tasks.trigger_path "
    "and other.filename_hint is not distinct from tasks.filename_hint "
    "and other.id != tasks.id"
)
# Task columns that releases before versioning added one by one to an existing `tasks` table,
# each with the statement that filled it for the rows already there. An adopted database gets
# those it lacks before migration 1 runs.
PRE_VERSIONING_TASK_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("fetched_url", "text", "update tasks set fetched_url = source where kind = 'url'"),
    ("superseded_by", "integer",
     f"update tasks set superseded_by = (select max(other.id) from tasks other where {SAME_REQUEST} "
     "and other.state = 'done') where state in ('done', 'failed', 'cancelled')"),
    ("send_to", "text", None),
    ("origin_headers", "text", None),
)


def latest_version(migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def pending(recorded: int, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[Migration]:
    """The migrations a database at version `recorded` still needs, in order; SchemaError if
    it was written by a newer release."""
    latest = latest_version(migrations)
    if recorded > latest:
        raise SchemaError(
            f"the database has schema version {recorded}, newer than this release's {latest}; "
            "run the fetchdrive release that wrote it (or a newer one)"
        )
    return [migration for migration in migrations if migration.version > recorded]


def columns(record: type) -> list[str]:
    """The columns that hold a dataclass's fields: its field names (a table may hold more,
    such as a password hash that no record carries)."""
    return [item.name for item in fields(record)]


def from_row(record: type[R], row: Mapping[str, Any]) -> R:
    """The dataclass `record` made from a row that has (at least) its columns."""
    return record(**{name: row[name] for name in columns(record)})
