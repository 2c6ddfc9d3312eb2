"""Several nodes on one database and one storage root act as one drive (SPEC 3 and 8, issue 17).

Real `fetchdrive serve` processes share a storage root and a PostgreSQL database (several
processes on one SQLite file are no deployment; tests/test_cluster_locks.py covers their
locks): the quota holds under concurrent PUTs through every node, a LOCK
taken on one node holds on the others, wrong passwords count on every node, a user's files
are the same from every node, the reservations of a killed node stop counting after the
lease, and a node's start-up recount never races another node's writes.
"""

from __future__ import annotations

import base64
import itertools
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from provider.quota import tree_size
from tests.downloads_helpers import wait_for
from tests.quota_helpers import quota_props, recounted
from tests.server_process import ServerProcess

# One worker runs the whole file (`--dist loadgroup`): spread over several, each started the
# file's three nodes again, and again whenever it came back to the file after another one's tests.
pytestmark = [pytest.mark.on_postgresql, pytest.mark.xdist_group("test_cluster_drive")]

LOCK_BODY = (b'<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             b"<D:locktype><D:write/></D:locktype><D:owner>tests</D:owner></D:lockinfo>")


class Cluster:
    """`count` nodes sharing the storage root of the first (whose `data` it is)."""

    def __init__(self, base: Path, count: int, settings: dict | None = None) -> None:
        root = base / "node0" / "data"
        self.nodes = [ServerProcess(base / f"node{index}", {"storage.root": str(root), "server.node": f"node{index}",
                                                             **(settings or {})}) for index in range(count)]
        with ThreadPoolExecutor(count) as starting:  # docs/cluster.md: nodes start together
            list(starting.map(ServerProcess.start, self.nodes))
        self._names = itertools.count(1)

    @property
    def first(self) -> ServerProcess:
        return self.nodes[0]

    def user(self, quota: str = "10M") -> tuple[str, str]:
        """A new user (name, password), made through the first node's command line."""
        name, password = f"user{next(self._names)}", f"password-{next(self._names)}-x"
        self.first.add_user(name, password, quota=quota)
        return name, password

    def sessions(self, name: str, password: str) -> list[requests.Session]:
        return [node.session(name, password) for node in self.nodes]

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.nodes)) as stopping:
            list(stopping.map(ServerProcess.stop, self.nodes))


def on_database(request, settings: dict | None = None) -> dict:
    """`settings` plus the `database.url` every node of a new cluster shares: a fresh
    PostgreSQL database."""
    return {"database.url": request.getfixturevalue("postgres_cluster").new_database(), **(settings or {})}


MAX_FILES = 30


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory, database) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster"), 3, on_database(request, {"storage.max_files": MAX_FILES}))
    yield started
    started.stop()


# --- the quota under concurrent writes through every node ----------------------

@pytest.mark.parametrize("quota, size, paths, puts", [
    (1_000_000, 100_000, 24, 24),   # distinct files: ten fit, the rest get 507
    (300_000, 100_000, 1, 18),      # one path replaced over and over
    (500_000, 64_000, 3, 30),       # a few paths, replaced and added
])
def test_concurrent_puts_through_every_node_never_exceed_the_quota(cluster, quota, size, paths, puts):
    name, password = cluster.user(quota=str(quota))
    sessions = cluster.sessions(name, password)
    answers: list[int] = []

    def put(number: int) -> None:
        node = number % len(cluster.nodes)
        answers.append(sessions[node].put(cluster.nodes[node].dav(f"file{number % paths}.bin"),
                                          data=bytes([number % 251]) * size).status_code)

    threads = [threading.Thread(target=put, args=(number,)) for number in range(puts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) <= {201, 204, 507}, answers
    assert 201 in answers
    stored = tree_size(cluster.first.space(name))
    assert stored <= quota
    assert stored == recounted(cluster.first, name)
    for session, node in zip(sessions, cluster.nodes):
        assert quota_props(session, node) == (stored, quota - stored)
        assert session.get(node.url("/api/v1/me")).json()["used_bytes"] == stored


@pytest.mark.parametrize("method", ["PUT", "MKCOL"])
def test_files_and_folders_made_through_every_node_stop_at_the_cap(cluster, method):
    name, password = cluster.user()
    sessions = cluster.sessions(name, password)
    answers: list[int] = []

    def make(number: int) -> None:
        node = number % len(cluster.nodes)
        url = cluster.nodes[node].dav(f"entry{number}")
        answers.append(sessions[node].request(method, url, data=b"x" if method == "PUT" else None).status_code)

    threads = [threading.Thread(target=make, args=(number,)) for number in range(MAX_FILES + 12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) == {201, 507}, answers
    made = list(cluster.first.space(name).iterdir())
    assert answers.count(201) == len(made) - 1 == MAX_FILES - 1  # `downloads/` is the first entry


# --- DAV locks ----------------------------------------------------------------

@pytest.mark.parametrize("locking, writing", [(0, 1), (1, 2), (2, 0), (1, 0)])
def test_a_lock_taken_on_one_node_holds_on_the_others(cluster, locking, writing):
    name, password = cluster.user()
    sessions = cluster.sessions(name, password)
    locker, writer = cluster.nodes[locking], cluster.nodes[writing]
    assert sessions[locking].put(locker.dav("doc.txt"), data=b"first").status_code == 201
    lock = sessions[locking].request("LOCK", locker.dav("doc.txt"), data=LOCK_BODY,
                                     headers={"Timeout": "Second-600", "Depth": "0"})
    assert lock.status_code == 200, lock.text
    token = lock.headers["Lock-Token"]

    assert sessions[writing].put(writer.dav("doc.txt"), data=b"second").status_code == 423
    assert sessions[writing].request("LOCK", writer.dav("doc.txt"), data=LOCK_BODY,
                                     headers={"Depth": "0"}).status_code == 423
    assert sessions[writing].get(writer.dav("doc.txt")).content == b"first"
    assert sessions[writing].put(writer.dav("doc.txt"), data=b"second",
                                 headers={"If": f"({token})"}).status_code == 204
    assert sessions[writing].request("UNLOCK", writer.dav("doc.txt"),
                                     headers={"Lock-Token": token}).status_code == 204
    assert sessions[locking].put(locker.dav("doc.txt"), data=b"third").status_code == 204
    assert sessions[writing].get(writer.dav("doc.txt")).content == b"third"


# --- login throttling -----------------------------------------------------------

@pytest.mark.parametrize("guesses_per_node", [(5, 0, 0), (2, 3, 0), (1, 1, 3), (0, 4, 1)])
def test_wrong_passwords_on_several_nodes_are_throttled_as_on_one(cluster, guesses_per_node):
    name, password = cluster.user()
    for node, guesses in zip(cluster.nodes, guesses_per_node):
        for _ in range(guesses):
            assert requests.get(node.dav(), auth=(name, "a-wrong-guess")).status_code == 401
    for node in cluster.nodes:
        refused = requests.get(node.dav(), auth=(name, password))
        assert refused.status_code == 429, refused.text
        assert "too many wrong passwords" in refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 300


def test_four_wrong_passwords_spread_over_nodes_do_not_lock_the_owner_out(cluster):
    name, password = cluster.user()
    for node in (cluster.nodes * 2)[:4]:
        assert requests.get(node.dav(), auth=(name, "a-wrong-guess")).status_code == 401
    # A right password clears the count on every node.
    assert requests.get(cluster.nodes[2].dav(), auth=(name, password)).status_code == 200
    for node in cluster.nodes[:2]:
        assert requests.get(node.dav(), auth=(name, "a-wrong-guess")).status_code == 401
    assert requests.get(cluster.first.dav(), auth=(name, password)).status_code == 200


# --- one drive ------------------------------------------------------------------

@pytest.mark.parametrize("writing", [0, 1, 2])
def test_a_users_files_are_the_same_from_every_node_and_nobody_elses(cluster, writing):
    owner, stranger = cluster.user(), cluster.user()
    owned, strangers = cluster.sessions(*owner), cluster.sessions(*stranger)
    writer = cluster.nodes[writing]
    assert owned[writing].request("MKCOL", writer.dav("folder")).status_code == 201
    assert owned[writing].put(writer.dav("folder/a.txt"), data=f"from node {writing}".encode()).status_code == 201
    for session, other, node in zip(owned, strangers, cluster.nodes):
        assert session.get(node.dav("folder/a.txt")).content == f"from node {writing}".encode()
        listing = session.request("PROPFIND", node.dav("folder/"), headers={"Depth": "1"})
        assert listing.status_code == 207 and "a.txt" in listing.text
        assert other.get(node.dav("folder/a.txt")).status_code == 404
        assert "a.txt" not in other.request("PROPFIND", node.dav(""), headers={"Depth": "infinity"}).text


# --- a node that dies -------------------------------------------------------------

def start_put(node: ServerProcess, name: str, password: str, path: str, length: int) -> socket.socket:
    """A PUT of `length` bytes whose body has only begun: the node holds room for all of it."""
    address = urlsplit(node.base_url)
    connection = socket.create_connection((address.hostname, address.port))
    credentials = base64.b64encode(f"{name}:{password}".encode()).decode()
    connection.sendall(f"PUT /dav/{path} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Basic {credentials}\r\n"
                       f"Content-Length: {length}\r\n\r\n".encode() + b"x" * 1000)
    return connection


@pytest.mark.parametrize("held, quota", [(600_000, 1_000_000), (900_000, 1_000_000)])
def test_the_reservations_of_a_killed_node_stop_counting_after_the_lease(request, tmp_path, database, held, quota):
    cluster = Cluster(tmp_path, 2, on_database(request, {"engine.lease": 2}))
    try:
        name, password = cluster.user(quota=str(quota))
        dying, surviving = cluster.nodes
        session = surviving.session(name, password)
        connection = start_put(dying, name, password, "big.bin", held)
        wait_for(lambda: quota_props(session, surviving)[0] == held, message="the room held on the other node")
        assert session.put(surviving.dav("more.bin"), data=b"y" * (quota - held + 1)).status_code == 507
        dying.kill()
        connection.close()
        wait_for(lambda: quota_props(session, surviving) == (0, quota), timeout=30,
                 message="the dead node's reservation no longer counted")
        assert session.put(surviving.dav("more.bin"), data=b"y" * quota).status_code == 201
        assert quota_props(session, surviving) == (quota, 0)
    finally:
        cluster.stop()


# --- start-up recount beside another node's writes -----------------------------------

@pytest.mark.parametrize("restarts", [1, 3])
def test_a_node_starting_while_another_writes_keeps_used_bytes_exact(cluster, restarts):
    # The file's cluster: a restarted node comes back as it was, and the user is this test's own.
    name, password = cluster.user(quota="none")
    writing, restarting = cluster.nodes[:2]
    session = writing.session(name, password)
    stop = threading.Event()
    errors: list[int] = []

    def write() -> None:
        for number in itertools.count():
            if stop.is_set():
                return
            path = writing.dav(f"f{number % 7}.bin")
            answer = session.delete(path) if number % 5 == 4 else session.put(path, data=b"z" * (1000 + number))
            if answer.status_code not in (201, 204, 404):
                errors.append(answer.status_code)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(restarts):
            restarting.restart()
    finally:
        stop.set()
        writer.join()
    assert not errors
    stored = tree_size(cluster.first.space(name))
    for node in cluster.nodes:
        assert quota_props(node.session(name, password), node)[0] == stored == recounted(cluster.first, name)
