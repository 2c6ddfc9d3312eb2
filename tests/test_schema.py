"""The versioned schema: migrations applied once on open, databases of the release before
versioning adopted without loss, tables that match their dataclasses.

`data/schema/before_versioning.sql` is a database that the last release before versioning
(commit 81ec293) wrote through its own stores (users, tasks in several states, catalog,
device and delivery, events, a share, a DAV lock and a dead property), dumped as SQL.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

import pytest

from engine.catalog import Catalog, CatalogEntry
from engine.sqlite_database import SqliteDatabase
from engine.devices_table import Delivery, Device, DeviceRepository, SqliteDevices
from engine.events_table import EventRepository, SqliteEvents
from engine.kinds import SourceKind, TaskState
from engine.repository import CatalogRepository, KeyValueTable, TaskRepository
from engine.schema import MIGRATIONS, Migration, SchemaError, latest_version
from engine.tasks import Task, TaskStore
from provider.accounts import Accounts
from provider.dav_storage import SqliteMapping
from provider.users_table import SqliteUsers, User, UserRepository
from server.shares_table import Share, ShareRepository, SqliteShares
from tests.server_process import ServerProcess, run_cli

BEFORE_VERSIONING = Path(__file__).parent / "data" / "schema" / "before_versioning.sql"
# Columns that releases before versioning added to `tasks` one by one: a database from before
# them lacks them all.
LATER_TASK_COLUMNS = ("fetched_url", "superseded_by", "send_to", "origin_headers")
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}  # as the old release stored them


def old_database(path: Path, *, drop_task_columns: tuple[str, ...] = ()) -> Path:
    """A database file as the release before versioning left it (optionally as an earlier
    release did, without some task columns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    connection.executescript(BEFORE_VERSIONING.read_text())
    for column in drop_task_columns:
        connection.execute(f"alter table tasks drop column {column}")
    connection.commit()
    connection.close()
    return path


def contents(path: Path) -> dict[str, list[tuple]]:
    """Every user table's rows, in key order (the version table aside)."""
    connection = sqlite3.connect(path)
    tables = [name for (name,) in connection.execute(
        "select name from sqlite_master where type = 'table' and name != 'schema_migrations' order by name")]
    found = {table: sorted(connection.execute(f"select * from {table}").fetchall(), key=repr) for table in tables}
    connection.close()
    return found


def table_columns(database: Path, table: str) -> list[str]:
    connection = sqlite3.connect(database)
    names = [row[1] for row in connection.execute(f"pragma table_info({table})")]
    connection.close()
    return names


def recorded_versions(path: Path) -> list[int]:
    connection = sqlite3.connect(path)
    versions = [version for (version,) in connection.execute("select version from schema_migrations order by version")]
    connection.close()
    return versions


def test_a_new_database_records_every_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "fetchdrive.sqlite"
    SqliteDatabase(path).close()
    SqliteDatabase(path).close()  # a second open applies nothing
    assert recorded_versions(path) == [migration.version for migration in MIGRATIONS]


@pytest.mark.parametrize("table, record, stored_only, computed", [
    ("tasks", Task, set(), set()),
    ("users", User, {"password_hash"}, set()),
    ("catalog", CatalogEntry, {"added_at"}, set()),
    ("shares", Share, {"token_sha256"}, set()),
    ("devices", Device, {"user"}, {"pending"}),
    ("deliveries", Delivery, {"user", "delivered_at"}, set()),
])
def test_tables_hold_the_fields_of_their_dataclasses(tmp_path: Path, table, record, stored_only, computed) -> None:
    path = tmp_path / "fetchdrive.sqlite"
    SqliteDatabase(path).close()
    assert set(table_columns(path, table)) == {item.name for item in fields(record)} - computed | stored_only


@pytest.mark.parametrize("dropped", [(), LATER_TASK_COLUMNS, LATER_TASK_COLUMNS[2:]],
                         ids=["last unversioned release", "before fetched_url", "before send_to"])
def test_a_database_from_before_versioning_is_adopted_losing_nothing(tmp_path: Path, dropped) -> None:
    path = old_database(tmp_path / "fetchdrive.sqlite", drop_task_columns=dropped)
    old_task_columns = table_columns(path, "tasks")
    before = contents(path)
    SqliteDatabase(path).close()
    after = contents(path)
    assert recorded_versions(path) == [migration.version for migration in MIGRATIONS]
    assert {table: rows for table, rows in after.items() if table in before and table != "tasks"} == \
        {table: rows for table, rows in before.items() if table != "tasks"}
    assert all(not rows for table, rows in after.items() if table not in before), "later migrations add empty tables"
    assert set(table_columns(path, "tasks")) == {item.name for item in fields(Task)}
    connection = sqlite3.connect(path)
    kept = sorted(connection.execute(f"select {', '.join(old_task_columns)} from tasks").fetchall(), key=repr)
    assert kept == before["tasks"]
    if "fetched_url" in dropped:  # filled as the old release filled it: a URL task's content came from its source
        filled = connection.execute("select count(*) from tasks where kind = 'url' and fetched_url = source").fetchone()
        assert filled == connection.execute("select count(*) from tasks where kind = 'url'").fetchone() != (0,)
    connection.close()


@pytest.mark.parametrize("dropped", [(), LATER_TASK_COLUMNS])
def test_adopted_tasks_read_back_with_their_states_and_kinds(tmp_path: Path, dropped) -> None:
    database = SqliteDatabase(old_database(tmp_path / "fetchdrive.sqlite", drop_task_columns=dropped))
    store = TaskStore(database)
    expected = {
        "alice": [(SourceKind.URL, TaskState.FAILED), (SourceKind.URL, TaskState.DONE)],
        "bob": [(SourceKind.URL, TaskState.QUEUED), (SourceKind.ID, TaskState.WAITING)],
    }
    for user, kinds_and_states in expected.items():
        found = store.for_user(user)
        assert [(task.kind, task.state) for task in found] == kinds_and_states
        assert all(isinstance(task.state, TaskState) and isinstance(task.kind, SourceKind) for task in found)
    database.close()


@pytest.mark.parametrize("user", sorted(PASSWORDS))
def test_old_passwords_still_open_the_adopted_accounts(tmp_path: Path, user: str) -> None:
    database = SqliteDatabase(old_database(tmp_path / "fetchdrive.sqlite"))
    accounts = Accounts(database, tmp_path)
    assert accounts.verify(user, PASSWORDS[user])
    assert not accounts.verify(user, PASSWORDS[user] + "x")
    database.close()


def test_the_server_serves_a_database_of_the_release_before_versioning(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server")
    old_database(server.data / "fetchdrive.sqlite")
    with server:
        answers = {}
        for user, password in PASSWORDS.items():
            response = server.session(user, password).get(server.url("/api/v1/tasks"))
            assert response.status_code == 200, response.text
            answers[user] = {task["name"]: (task["kind"], task["state"]) for task in response.json()}
        # bob's c.bin was queued and film.mkv waiting: the engine may have tried them since
        # (c.bin's origin is closed, film.mkv's ID is in no catalog), so each is as stored or
        # what a try made of it.
        assert answers["bob"].pop("c.bin")[0] == "url"
        assert answers["bob"].pop("film.mkv") in {("id", "waiting"), ("id", "downloading"), ("id", "failed")}
        assert answers == {"alice": {"a.bin": ("url", "done"), "b.bin": ("url", "failed")}, "bob": {}}
    assert recorded_versions(server.data / "fetchdrive.sqlite") == [m.version for m in MIGRATIONS]


_EXTRA = Migration(latest_version() + 1, "a test column", ("alter table catalog add column note text",))


def test_a_new_migration_reaches_an_existing_database(tmp_path: Path) -> None:
    path = old_database(tmp_path / "fetchdrive.sqlite")
    SqliteDatabase(path).close()
    before = contents(path)["catalog"]
    SqliteDatabase(path, migrations=MIGRATIONS + (_EXTRA,)).close()
    assert "note" in table_columns(path, "catalog")
    assert [row[:-1] for row in contents(path)["catalog"]] == before
    assert recorded_versions(path)[-1] == _EXTRA.version


@pytest.mark.parametrize("bad", ["alter table nowhere add column x text", "create table users (x text)"])
def test_a_failing_migration_changes_nothing(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "fetchdrive.sqlite"
    SqliteDatabase(path).close()
    before = sqlite3.connect(path).execute("select sql from sqlite_master order by name").fetchall()
    broken = Migration(latest_version() + 1, "broken", ("create table half_done (x text)", bad))
    with pytest.raises(sqlite3.OperationalError):
        SqliteDatabase(path, migrations=MIGRATIONS + (broken,))
    assert sqlite3.connect(path).execute("select sql from sqlite_master order by name").fetchall() == before
    assert recorded_versions(path)[-1] == latest_version()


@pytest.mark.parametrize("newer", [latest_version() + 1, latest_version() + 40])
def test_a_database_from_a_newer_release_is_refused_with_one_line(tmp_path: Path, newer: int) -> None:
    server = ServerProcess(tmp_path / "server")
    path = server.data / "fetchdrive.sqlite"
    SqliteDatabase(path).close()
    connection = sqlite3.connect(path)
    connection.execute("insert into schema_migrations (version, summary, applied_at) values (?, 'future', 0)", [newer])
    connection.commit()
    connection.close()
    with pytest.raises(SchemaError, match=f"schema version {newer}"):
        SqliteDatabase(path)
    result = run_cli(server.config_path, "user", "list")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"fetchdrive: error: the database has schema version {newer}, newer than this release's {latest_version()}; "
        "run the fetchdrive release that wrote it (or a newer one)"
    ]


@pytest.mark.parametrize("make, protocol", [
    (TaskStore, TaskRepository),
    (Catalog, CatalogRepository),
    (SqliteUsers, UserRepository),
    (SqliteShares, ShareRepository),
    (SqliteDevices, DeviceRepository),
    (SqliteEvents, EventRepository),
    (lambda database: SqliteMapping(database, "dav_locks"), KeyValueTable),
    (lambda database: SqliteMapping(database, "dav_properties"), KeyValueTable),
])
def test_the_sqlite_stores_fill_the_repository_protocols(tmp_path: Path, make, protocol) -> None:
    database = SqliteDatabase(tmp_path / "fetchdrive.sqlite")
    assert isinstance(make(database), protocol)
    database.close()
