"""Several nodes started at once on one new database and one storage root (SPEC 8, issue 17):
the schema's migrations run once, one node makes the first admin, and every node serves the
one drive. (Processes opening a new database at once are tested alone in
test_postgres_database.py; these are whole servers, with their start-up writes.)"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from engine.schema import MIGRATIONS
from tests.server_process import ADMIN_PASSWORD, ServerProcess


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_four_servers_starting_at_once_on_a_new_database_migrate_it_once_and_all_serve(tmp_path, request, kind):
    settings = {"storage.root": str(tmp_path / "shared-root")}
    if kind == "postgresql":
        settings["database.url"] = request.getfixturevalue("postgres_url")
    nodes = [ServerProcess(tmp_path / f"node{number}", {**settings, "server.node": f"node{number}"})
             for number in range(4)]
    try:
        with ThreadPoolExecutor(len(nodes)) as starting:
            list(starting.map(ServerProcess.start, nodes))
        for number, node in enumerate(nodes):
            admin = node.session("admin", ADMIN_PASSWORD)
            assert admin.put(node.dav(f"from-node{number}.txt"), data=f"node {number}".encode()).status_code == 201
        for node in nodes:  # one drive: each node serves what every other wrote
            listing = admin.request("PROPFIND", node.dav(), headers={"Depth": "1"}).text
            assert all(f"from-node{number}.txt" in listing for number in range(len(nodes)))
        assert sum(node.log_text().count("added user admin") for node in nodes) == 1
    finally:
        for node in nodes:
            node.stop()
    assert applied_migrations(kind, settings) == [(migration.version, 1) for migration in MIGRATIONS]


def applied_migrations(kind: str, settings: dict) -> list[tuple[int, int]]:
    """(version, times recorded) from the database's schema_migrations."""
    sql = "select version, count(*) from schema_migrations group by version order by version"
    if kind == "postgresql":
        with psycopg.connect(settings["database.url"]) as connection:
            return [tuple(row) for row in connection.execute(sql)]
    with closing(sqlite3.connect(Path(settings["storage.root"]) / "fetchdrive.sqlite")) as connection:
        return [tuple(row) for row in connection.execute(sql)]
