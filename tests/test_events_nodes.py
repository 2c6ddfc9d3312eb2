"""Live events across nodes (SPEC 6 and 8, issue 19): two real `fetchdrive serve` processes
share one storage root and one PostgreSQL database, and a client hears each of its own changes
whichever node made it and whichever node the client follows, and nothing of anyone else's.

The nodes' keep-alive interval is longer than any wait here: a stream that hears another
node's event heard it through LISTEN/NOTIFY, not by reading the table at a keep-alive.
"""

from __future__ import annotations

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from engine.events import Event
from engine.pg_notifier import APPLICATION_NAME, PAYLOAD_LIMIT, decode, encode
from tests.conftest import Account, new_account
from tests.downloads_helpers import url_shortcut, wait_for
from tests import forked_cli
from tests.forked_cli import ForkedProcess
from tests.server_process import ServerProcess
from tests.sse_helpers import Listener
from tests.test_client_commands import tree

# One worker runs the whole file (`--dist loadgroup`): spread over several, each started the
# file's two nodes again, and again whenever it came back to the file after another one's tests.
pytestmark = pytest.mark.xdist_group("test_events_nodes")

KEEPALIVE = 60  # seconds: beyond every deadline below, within `sync`'s read time-out (90 s)
SIZE = 768 * 1024  # a download's bytes: 1.5 s at the origin's pace, two progress reports on the way


@pytest.fixture(scope="module")
def drive_database(postgres_cluster) -> str:
    return postgres_cluster.new_database()


@contextlib.contextmanager
def _two_nodes(base: Path, url: str, keepalive: float) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes a and b of one drive, stopped at the end."""
    shared = {"database.url": url, "storage.root": str(base / "root"), "events.keepalive": keepalive}
    started = [ServerProcess(base / name, {**shared, "server.node": name}) for name in ("a", "b")]
    try:
        with ThreadPoolExecutor(2) as starting:  # docs/cluster.md: nodes start together
            list(starting.map(ServerProcess.start, started))
        yield started[0], started[1]
    finally:
        with ThreadPoolExecutor(2) as stopping:
            list(stopping.map(ServerProcess.stop, started))


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, drive_database) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes a and b of one drive, for the whole file."""
    with _two_nodes(tmp_path_factory.mktemp("nodes"), drive_database, KEEPALIVE) as pair:
        yield pair


class Strangers:
    """Another user following both nodes for a whole test, who must hear nothing of `owner`."""

    def __init__(self, nodes: tuple[ServerProcess, ServerProcess]) -> None:
        self.account = new_account(nodes[0], "mallory", "mallory-password-5")
        self.listeners = [Listener(self.account.session, node.base_url) for node in nodes]

    def close_and_check(self, owner: Account) -> None:
        for listener in self.listeners:
            listener.close()
            heard = listener.events()
            assert [event.kind for event in heard] == ["ready"], heard
            assert owner.name not in json.dumps([event.data for event in heard])


def _follow_both(account: Account, nodes: tuple[ServerProcess, ServerProcess]) -> list[Listener]:
    return [Listener(account.session, node.base_url) for node in nodes]


@pytest.mark.parametrize("name", ["alice", "bob", "carol"])
def test_a_download_is_heard_live_on_both_nodes_whichever_runs_it(nodes, origin, name):
    a, _ = nodes
    owner = new_account(a, name, f"{name}-password-7")
    strangers = Strangers(nodes)
    listeners = _follow_both(owner, nodes)
    try:
        origin.add(f"/{owner.name}.bin", os.urandom(SIZE), rate=512 * 1024)
        response = owner.session.post(a.url("/api/v1/tasks"), json={"url": origin.url(f"/{owner.name}.bin")})
        assert response.status_code == 201, response.text
        task = response.json()["id"]
        for listener in listeners:
            listener.wait_for("task.created", id=task)
            listener.wait_for("task.progress", id=task)
            listener.wait_for("task.done", id=task, path=f"downloads/{owner.name}.bin")
            listener.wait_for("file.created", path=f"downloads/{owner.name}.bin")
    finally:
        for listener in listeners:
            listener.close()
    for listener in listeners:
        progress = listener.events("task.progress")
        assert all(event.id is None and 0 < event.data["bytes_done"] <= SIZE for event in progress)
        assert listener.keepalives == 0  # heard at once, not at a keep-alive
    strangers.close_and_check(owner)


@pytest.mark.parametrize("writer, name", [(0, "notes.txt"), (1, "notes.txt"), (0, "Zeugnis ü 2.txt"), (1, "a b.md")])
def test_file_changes_through_one_node_are_heard_on_both(nodes, writer, name):
    through = nodes[writer]
    owner = new_account(nodes[0], "dora", "dora-password-7")
    strangers = Strangers(nodes)
    listeners = _follow_both(owner, nodes)
    moved = f"moved-{name}"
    try:
        assert owner.session.put(through.dav(name), data=b"1").status_code == 201
        assert owner.session.put(through.dav(name), data=b"22").status_code == 204
        assert owner.session.request("MOVE", through.dav(name), headers={"Destination": through.dav(moved)}).status_code == 201
        assert owner.session.delete(through.dav(moved)).status_code == 204
        for listener in listeners:
            listener.wait_for("file.created", path=name)
            listener.wait_for("file.changed", path=name)
            listener.wait_for("file.moved", path=name, to=moved)
            listener.wait_for("file.deleted", path=moved)
    finally:
        for listener in listeners:
            listener.close()
    for listener in listeners:
        numbers = [event.id for event in listener.events() if event.id is not None]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))  # one numbering, no gaps
    strangers.close_and_check(owner)


@pytest.mark.parametrize("first, second", [(1, 0), (0, 1)], ids=["b then a", "a then b"])
def test_a_stream_dropped_on_one_node_resumes_on_the_other_missing_nothing(nodes, first, second):
    owner = new_account(nodes[0], "erin", "erin-password-7")
    strangers = Strangers(nodes)
    elsewhere = nodes[second]
    dropped = Listener(owner.session, nodes[first].base_url)
    assert owner.session.put(elsewhere.dav("before.txt"), data=b"b").status_code == 201
    dropped.wait_for("file.created", path="before.txt")
    dropped.close()
    away = [f"while-away-{n}.txt" for n in range(4)]
    for path in away:
        assert owner.session.put(nodes[first].dav(path), data=b"w").status_code == 201
    resumed = Listener(owner.session, elsewhere.base_url, last_id=dropped.last_id())
    try:
        assert owner.session.put(nodes[first].dav("after.txt"), data=b"a").status_code == 201
        resumed.wait_for("file.created", path="after.txt")
    finally:
        resumed.close()
    assert [event.data["path"] for event in resumed.events("file.created")] == away + ["after.txt"]
    assert not resumed.events("ready")
    strangers.close_and_check(owner)


def _devices(account: Account, node: ServerProcess) -> dict[str, dict]:
    return {device["name"]: device for device in account.session.get(node.url("/api/v1/devices")).json()}


class DeviceSyncs:
    """`fetchdrive sync --device NAME --watch` processes, each following one node."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._running: dict[tuple[str, str], ForkedProcess] = {}

    def start(self, node: ServerProcess, account: Account, name: str) -> Path:
        """Start the device `name` of `account` (forked: tests/forked_cli.py); its local folder."""
        local = self._folder / f"{account.name}-{name}"
        command = ["sync", "--server", node.base_url, "--user", account.name, "--device", name, "--watch", "3600",
                   str(local)]
        self._running[account.name, name] = forked_cli.start(
            command, env={**os.environ, "FETCHDRIVE_PASSWORD": account.password},
            stdout=self._folder / f"{account.name}-{name}.log")
        return local

    def stop(self, account: Account, name: str) -> None:
        _end(self._running.pop((account.name, name)))

    def stop_all(self) -> None:
        for process in self._running.values():
            _end(process)
        self._running.clear()


def _end(process: ForkedProcess) -> None:
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def syncs(tmp_path) -> Iterator[DeviceSyncs]:
    running = DeviceSyncs(tmp_path)
    yield running
    running.stop_all()


@pytest.mark.parametrize("how", ["api", "trigger"])
def test_a_device_following_node_b_receives_a_file_sent_on_node_a(nodes, origin, syncs, how):
    a, b = nodes
    owner = new_account(a, "frank", "frank-password-7")
    other = new_account(a, "grace", "grace-password-7")
    laptop = syncs.start(b, owner, "laptop")
    phone = syncs.start(a, owner, "phone")  # not named: receives nothing
    others_laptop = syncs.start(b, other, "laptop")  # the same name, another user
    for account, names in ((owner, {"laptop", "phone"}), (other, {"laptop"})):
        for node in nodes:  # each device listed online on the node its stream is not on too
            wait_for(lambda: {name for name, d in _devices(account, node).items() if d["online"]} == names,
                     timeout=60, message=f"{account.name}'s devices {names} online as seen from {node.base_url}")
    body = os.urandom(100_000)
    if how == "api":
        assert owner.session.put(a.dav("film.mkv"), data=body).status_code == 201
        response = owner.session.post(a.url("/api/v1/devices/laptop/send"), json={"path": "film.mkv"})
        assert response.status_code == 201, response.text
    else:
        origin.add(f"/{owner.name}-film.mkv", body)
        trigger = url_shortcut(origin.url(f"/{owner.name}-film.mkv"), filename="film.mkv", **{"send-to": "laptop"})
        assert owner.session.put(a.dav("downloads/film.url"), data=trigger).status_code == 201
    wait_for(lambda: tree(laptop).get("film.mkv") == body, message="film.mkv on the laptop that follows node b")
    wait_for(lambda: _devices(owner, a)["laptop"]["pending"] == 0, message="the delivery acknowledged")
    assert tree(phone) == {} and tree(others_laptop) == {}
    assert sorted(tree(laptop)) == ["film.mkv"]


@pytest.fixture(scope="module")
def quick_nodes(tmp_path_factory, postgres_cluster) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes a and b of another drive, with a short keep-alive: node b notices a stream's client
    gone at its next write."""
    with _two_nodes(tmp_path_factory.mktemp("quick"), postgres_cluster.new_database(), keepalive=1) as pair:
        yield pair


@pytest.mark.parametrize("end", ["the device stops", "its node is killed"])
def test_a_device_whose_stream_ends_on_node_b_is_listed_offline_on_node_a(quick_nodes, syncs, end):
    a, b = quick_nodes
    if b.process.poll() is not None:  # killed by the other case, run first
        b.start()
    owner = new_account(a, "ivan", "ivan-password-7")
    syncs.start(b, owner, "laptop")
    syncs.start(a, owner, "phone")
    online = lambda: {name for name, d in _devices(owner, a).items() if d["online"]}  # noqa: E731
    # (Each sync is a new interpreter: on a loaded machine one took over 20 s to connect.)
    wait_for(lambda: online() == {"laptop", "phone"}, timeout=60, message="both devices online as seen from node a")
    if end == "the device stops":
        syncs.stop(owner, "laptop")
    else:
        b.kill()  # its streams' marks lapse: two keep-alive intervals and a margin
    wait_for(lambda: online() == {"phone"}, timeout=60, message="the laptop listed offline, the phone still online")


def _listening(url: str, terminate: bool = False) -> int:
    """How many nodes listen for events on the drive's database (after cutting them off)."""
    with psycopg.connect(url, autocommit=True) as connection:
        action = "pg_terminate_backend(pid)" if terminate else "pid"
        return len(connection.execute(f"select {action} from pg_stat_activity where application_name = %s "
                                      "and datname = current_database()", [APPLICATION_NAME]).fetchall())


@pytest.mark.parametrize("writer", [0, 1], ids=["written on a", "written on b"])
def test_events_cross_nodes_again_once_their_listening_connections_are_cut(nodes, drive_database, writer):
    owner = new_account(nodes[0], "heidi", "heidi-password-7")
    listeners = _follow_both(owner, nodes)
    try:
        assert _listening(drive_database, terminate=True) == 2  # as when PostgreSQL restarts
        assert owner.session.put(nodes[writer].dav("while-cut.txt"), data=b"c").status_code == 201
        for listener in listeners:  # read from the table when the node listens again
            listener.wait_for("file.created", path="while-cut.txt")
        wait_for(lambda: _listening(drive_database) == 2, message="both nodes listening again")
        assert owner.session.put(nodes[writer].dav("after.txt"), data=b"a").status_code == 201
        for listener in listeners:
            listener.wait_for("file.created", path="after.txt")
    finally:
        for listener in listeners:
            listener.close()
    assert all("listening for other nodes' events failed" in node.log_text() for node in nodes)


@pytest.mark.parametrize("data, sent", [
    ({"id": 7, "state": "downloading", "name": "film.mkv", "bytes_done": 5, "bytes_total": 9}, "whole"),
    ({"id": 7, "name": "é" * 3000, "folder": "downloads/" + "ü" * 1000, "bytes_done": 5}, "without names"),
    ({"id": 7, "bytes_done": 5, "unexpected": "x" * PAYLOAD_LIMIT}, "not at all"),
])
def test_a_progress_event_fits_postgresqls_payload_limit_or_stays_on_its_node(data, sent):
    payload = encode("origin", "alice", Event("task.progress", data))
    if sent == "not at all":
        assert payload is None
        return
    assert len(payload.encode()) <= PAYLOAD_LIMIT
    origin, user, flash = decode(payload)
    assert (origin, user, flash.kind) == ("origin", "alice", "task.progress")
    names = {"name", "folder", "path", "error"}
    assert flash.data == (data if sent == "whole" else {k: v for k, v in data.items() if k not in names})


@pytest.mark.parametrize("payload", ["", "{", "[]", "null", '{"u": "alice"}', '{"o": 1, "u": "alice"}',
                                     '{"o": "x", "u": ["alice"]}', '{"o": "x", "u": "alice", "k": "task.progress"}'])
def test_a_payload_that_is_not_ours_is_ignored(payload):
    assert decode(payload) is None
