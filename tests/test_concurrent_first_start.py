"""Several nodes started at once on one new database and one storage root (SPEC 8, issue 17):
the schema's migrations run once, one node makes the first admin, and every node serves the
one drive, share links included. (Processes opening a new database at once are tested alone in
test_postgres_database.py; these are whole servers, with their start-up writes.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from engine.schema import MIGRATIONS
from tests.server_process import ADMIN_PASSWORD, ServerProcess


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_four_servers_starting_at_once_on_a_new_database_migrate_it_once_and_all_serve(tmp_path, request, kind):
    settings = {"storage.root": str(tmp_path / "node0" / "data")}  # node 0's data folder, for all
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
        # Share links hold on every node: the nodes made one share key between them.
        link = urlsplit(admin.post(nodes[0].url("/api/v1/shares"), json={"path": "from-node0.txt"}).json()["url"]).path
        visitor = requests.Session()
        visitor.trust_env = False
        assert all(visitor.get(node.url(link)).content == b"node 0" for node in nodes)
        assert sum(node.log_text().count("added user admin") for node in nodes) == 1
    finally:
        for node in nodes:
            node.stop()
    applied = nodes[0].query("select version, count(*) from schema_migrations group by version order by version")
    assert [tuple(row) for row in applied] == [(migration.version, 1) for migration in MIGRATIONS]
