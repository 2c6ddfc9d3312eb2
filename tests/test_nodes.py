"""Several nodes as one drive's download workers (SPEC 8, issue 17): real server processes sharing
one storage root and one database, each with its own `server.node` name. Tasks run once, a node
killed with SIGKILL has its download taken over and resumed by another, a restarted node resumes
its own tasks at once and leaves the others' alone (their temporary files and seeding too), the
per-user limit holds over nodes, and a cancel on one node stops the transfer on the node that
runs it. On SQLite (the nodes share its file in the root) and on PostgreSQL."""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.database import open_database
from engine.tasks import Task, TaskStore
from tests.conftest import Account
from tests.downloads_helpers import files_in, url_shortcut, wait_for
from tests.origin import Origin
from tests.server_process import ServerProcess

MIB = 1024 * 1024
SIZE = 6 * MIB
BODY = hashlib.sha256(b"nodes").digest() * (SIZE // 32)
RUNNING = ("downloading", "verifying")
SLOW = 64 * 1024  # bytes a second: a big download still under way after anything a test does
# A node starved of the CPU for this long on a loaded machine loses its task to another early.
LEASE = 5

pytestmark = pytest.mark.on_postgresql


class Cluster:
    """Nodes started one by one over a shared storage root and one database (`database_url`)."""

    def __init__(self, base: Path, database_url: str) -> None:
        self.base = base
        self.root = base / "root"
        self.database_url = database_url
        self.nodes: dict[str, ServerProcess] = {}

    def start(self, name: str, settings: dict | None = None) -> ServerProcess:
        node = ServerProcess(self.base / name, {"database.url": self.database_url, "storage.root": str(self.root),
                                                "server.node": name, **(settings or {})})
        self.nodes[name] = node.start()
        return node

    def start_together(self, names: list[str], settings: dict | None = None) -> list[ServerProcess]:
        """Nodes `names` started at once (docs/cluster.md: nodes start in any order and together)."""
        with ThreadPoolExecutor(len(names)) as starting:
            return list(starting.map(lambda name: self.start(name, settings), names))

    def account(self, name: str) -> Account:
        node = next(iter(self.nodes.values()))
        password = f"{name}-password"
        node.add_user(name, password, quota="100M")
        return Account(name, password, node.session(name, password))

    def space(self, user: str) -> Path:
        return self.root / "spaces" / user

    def row(self, task_id: int) -> Task:
        """The task as the shared database holds it: its node and its progress saved as resumable."""
        database = open_database(self.database_url, self.root)
        try:
            return TaskStore(database).get(task_id)
        finally:
            database.close()

    def temp_files(self) -> list[str]:
        return files_in(self.root / "tmp" / "downloads")

    def delivered(self, user: str, name: str, timeout: float = 60) -> bytes:
        path = self.space(user) / "downloads" / name
        wait_for(path.exists, timeout=timeout, message=f"{name} delivered")
        return path.read_bytes()

    def stop(self) -> None:
        with ThreadPoolExecutor(max(len(self.nodes), 1)) as stopping:
            list(stopping.map(ServerProcess.stop, self.nodes.values()))


@pytest.fixture
def cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    started = Cluster(tmp_path, database_url)
    yield started
    started.stop()


def tasks(node: ServerProcess, account: Account) -> list[dict]:
    return account.session.get(node.url("/api/v1/tasks")).json()


def add(node: ServerProcess, account: Account, url: str) -> dict:
    response = account.session.post(node.url("/api/v1/tasks"), json={"url": url})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("node_count, trigger_count", [(2, 8), (3, 12)])
def test_each_task_runs_once_over_the_nodes(cluster, origin: Origin, node_count: int, trigger_count: int) -> None:
    nodes = cluster.start_together([f"node{n}" for n in range(node_count)])
    alice = cluster.account("alice")
    bodies = {f"/f{n}.bin": hashlib.sha256(f"{n}".encode()).digest() * 2048 for n in range(trigger_count)}
    for path, body in bodies.items():
        origin.add(path, body, rate=256 * 1024)
    for number, path in enumerate(bodies):  # each trigger dropped through another node
        node = nodes[number % node_count]
        trigger = url_shortcut(origin.url(path))
        assert alice.session.put(node.dav(f"downloads{path}.url"), data=trigger).status_code == 201
    for path, body in bodies.items():
        assert cluster.delivered("alice", path.lstrip("/")) == body
    for path in bodies:
        assert origin.count(path) == 1, f"{path} fetched {origin.count(path)} times"
    wait_for(lambda: [task["state"] for task in tasks(nodes[0], alice)] == ["done"] * trigger_count,
             message="every task done once")
    expected = sorted(path.lstrip("/") for path in bodies)
    wait_for(lambda: files_in(cluster.space("alice") / "downloads") == expected, message="one file each, triggers gone")


def big_download_under_way(cluster: Cluster, origin: Origin, name: str, other: str, settings: dict) -> tuple:
    """Node `name` started with `settings`, alice's download of /big.bin running on it, then node
    `other` started beside it, and some progress saved; (node, other node, alice, the origin's
    resource, the task, how many requests the origin had before `other` started). The origin sends 64 KiB/s a connection, slow enough that the node is
    still at it whatever the test does next, however slowly a loaded machine starts `other`.
    With several connections a task first asks for its first MiB alone (engine/segments.py's
    probe), which saves no progress until it ends: that request goes at 256 KiB/s (at 64 KiB/s
    it took 16 s), and the origin slows to 64 KiB/s once the next one has begun (a pace counts
    from the start of each answer, so what the next one got before is made up for by a pause;
    it could finish the file only if this test were held up 20 s between the two)."""
    node = cluster.start(name, settings)
    alice = cluster.account("alice")
    probing = settings["engine.connections_per_task"] > 1
    resource = origin.add("/big.bin", BODY, rate=4 * SLOW if probing else SLOW)
    task = add(node, alice, origin.url("/big.bin"))
    if probing:
        wait_for(lambda: origin.count("/big.bin") > 1, timeout=60, message=f"{name} past its probe")
        resource.rate = SLOW
    # Claimed and leased by `name` before `other` exists, so that `other` cannot take it first.
    wait_for(lambda: cluster.row(task["id"]).node == name, timeout=60, message=f"the task claimed by {name}")
    wait_for(lambda: origin.count("/big.bin") > 0, timeout=60, message=f"{name}'s request")
    asked_before_other = len(origin.requests)
    other_node = cluster.start(other, settings)
    wait_for(lambda: cluster.row(task["id"]).bytes_done > 128 * 1024, timeout=60, message=f"{name}'s progress saved")
    return node, other_node, alice, resource, task, asked_before_other


@pytest.mark.parametrize("connections", [1, 4])
def test_a_download_of_a_killed_node_resumes_on_another(cluster, origin: Origin, connections: int) -> None:
    settings = {"engine.lease": LEASE, "engine.connections_per_task": connections}
    first, second, alice, resource, _, asked_before_second = big_download_under_way(
        cluster, origin, "first", "second", settings)
    first.kill()
    assert not (cluster.space("alice") / "downloads" / "big.bin").exists()
    resource.rate = None
    assert cluster.delivered("alice", "big.bin") == BODY
    # Counted from the second node's start, not the kill: on a loaded machine the first node
    # may miss a renewal and the second resume the task just before the kill. Either way the
    # first node's one stream was under way by then, so every later request is the second's.
    resumed = [entry.range for entry in origin.requests[asked_before_second:]]
    assert resumed and all(asked and not asked.startswith("bytes=0-") for asked in resumed), resumed
    assert origin.bytes_sent("/big.bin") < 1.3 * SIZE
    wait_for(lambda: not cluster.temp_files(), message="temporary data removed")
    assert [task["state"] for task in tasks(second, alice)] == ["done"]


@pytest.mark.parametrize("connections", [1, 4])
def test_a_node_that_stalled_past_its_lease_gives_the_task_up_unpublished(cluster, origin: Origin,
                                                                           connections: int) -> None:
    settings = {"engine.lease": LEASE, "engine.connections_per_task": connections}
    stalled, _, alice, resource, task, _ = big_download_under_way(cluster, origin, "stalled", "taker", settings)
    stalled.process.send_signal(signal.SIGSTOP)  # as a node under swap storm, or cut off the network, might
    try:
        wait_for(lambda: cluster.row(task["id"]).node == "taker", timeout=30, message="the task taken over")
    finally:
        stalled.process.send_signal(signal.SIGCONT)
    # The origin still paced: the stalled node cannot finish its streams before its renewal
    # finds the task another's (on a loaded machine it sometimes did, and gave up silently).
    wait_for(lambda: "cancelled or taken over by another node" in stalled.log_text(), timeout=30,
             message="the stalled node giving the task up")
    resource.rate = None
    assert cluster.delivered("alice", "big.bin") == BODY
    wait_for(lambda: not cluster.temp_files(), message="temporary data removed")
    assert files_in(cluster.space("alice") / "downloads") == ["big.bin"]
    assert [(row["state"], row["path"]) for row in tasks(stalled, alice)] == [("done", "downloads/big.bin")]
    assert "task 1 done" not in stalled.log_text()


@pytest.mark.parametrize("killed", ["first", "second"])
def test_a_restarted_node_resumes_its_own_tasks_at_once_and_leaves_the_others(cluster, origin: Origin,
                                                                               killed: str) -> None:
    # A lease far longer than the test may wait: only the restarted node itself can resume its task.
    # One stream per download: any request after the kill is a resume or a restart.
    settings = {"engine.lease": 300, "engine.workers": 1, "engine.connections_per_task": 1}
    alice, paced, added = None, [], {}
    for name in ("first", "second"):
        node = cluster.start(name, settings)
        alice = alice or cluster.account("alice")
        paced.append(origin.add(f"/{name}.bin", BODY, rate=MIB // 4))
        added[name] = add(node, alice, origin.url(f"/{name}.bin"))["id"]
        # Its one worker busy with it: the next node's task can only go to the next node.
        wait_for(lambda: origin.bytes_sent(f"/{name}.bin") > 0, timeout=60, message=f"{name} node downloading")
    for name, task_id in added.items():
        wait_for(lambda: cluster.row(task_id).bytes_done > MIB // 8, timeout=60,
                 message=f"{name} node's progress saved")
    cluster.nodes[killed].kill()
    asked_before_kill = len(origin.requests)
    for resource in paced:
        resource.rate = None
    cluster.nodes[killed].start()
    for name in ("first", "second"):
        assert cluster.delivered("alice", f"{name}.bin", timeout=60) == BODY
    again = origin.requests[asked_before_kill:]
    assert {entry.path for entry in again} <= {f"/{killed}.bin"}, "the other node's download was restarted"
    assert all(entry.range for entry in again), "the restarted node fetched its download from the start"


def test_a_starting_node_leaves_another_live_nodes_filing_and_seeding_alone(cluster, origin: Origin) -> None:
    # Filing a download in the content store swaps a link in beside its temporary file (see
    # SpaceWriter.relink), and a finished torrent is seeded from a tree in the temporary area.
    # A node starting meanwhile removed both as strays: the filing failed, the seeding lost
    # its files. What the finished task's node holds there is its own while it is alive.
    first = cluster.start("first")
    alice = cluster.account("alice")
    origin.add("/filed.bin", BODY[:100_000])
    task_id = add(first, alice, origin.url("/filed.bin"))["id"]
    assert cluster.delivered("alice", "filed.bin") == BODY[:100_000]
    wait_for(lambda: cluster.row(task_id).sha256, message="filed")
    temp = cluster.root / "tmp" / "downloads"
    swap, seeded = temp / f"{task_id}.part.link", temp / "seeding" / str(task_id) / "filed.bin"
    swap.write_bytes(b"the first node's, mid-swap")
    seeded.parent.mkdir(parents=True)
    seeded.write_bytes(b"the first node's, seeding")
    strays = [temp / "stray", temp / "seeding" / "stray", temp / "seeding" / str(task_id + 1000)]
    for stray in strays:
        stray.write_bytes(b"nobody's")
    cluster.start("second")
    assert swap.exists() and seeded.exists() and not any(stray.exists() for stray in strays)
    first.restart()  # its own start: what it left is a crash's leftover
    assert not swap.exists() and not seeded.exists()


@pytest.mark.parametrize("per_user", [1, 2])
def test_the_per_user_limit_holds_over_the_nodes(cluster, origin: Origin, per_user: int) -> None:
    settings = {"engine.workers": 4, "engine.per_user": per_user}
    nodes = cluster.start_together(["first", "second"], settings)
    alice, bob = cluster.account("alice"), cluster.account("bob")
    paced = [origin.add(f"/a{n}", bytes([n]) * MIB, rate=256 * 1024) for n in range(per_user + 2)]
    for number in range(per_user + 2):
        add(nodes[number % 2], alice, origin.url(f"/a{number}"))
    paced.append(origin.add("/b", b"b" * MIB, rate=256 * 1024))
    add(nodes[1], bob, origin.url("/b"))
    most = 0

    def alices_running_and_bobs_too() -> bool:
        nonlocal most
        running = sum(task["state"] in RUNNING for task in tasks(nodes[0], alice))
        most = max(most, running)
        return running == per_user and [task["state"] for task in tasks(nodes[1], bob)] == ["downloading"]

    wait_for(alices_running_and_bobs_too, message="alice at her limit, bob's task beside hers")
    for resource in paced:
        resource.rate = 2 * MIB

    def all_done() -> bool:
        nonlocal most
        states = [task["state"] for task in tasks(nodes[0], alice)]
        most = max(most, sum(state in RUNNING for state in states))
        return states == ["done"] * (per_user + 2)

    wait_for(all_done, timeout=60, message="all of alice's tasks done")
    assert most == per_user


@pytest.mark.parametrize("how", ["api", "trigger"])
def test_a_cancel_on_another_node_stops_the_transfer(cluster, origin: Origin, how: str) -> None:
    settings = {"engine.lease": 3}  # renewals every second: the runner hears of the cancel within one
    runner = cluster.start("runner", settings)
    alice = cluster.account("alice")
    # Slow enough to be under way still when a loaded machine has started the other node.
    origin.add("/slow.bin", BODY, rate=64 * 1024)
    trigger = url_shortcut(origin.url("/slow.bin"))
    assert alice.session.put(runner.dav("downloads/slow.url"), data=trigger).status_code == 201
    wait_for(lambda: origin.bytes_sent("/slow.bin") > 0, message="the runner downloading")
    other = cluster.start("other", settings)
    if how == "api":
        [task] = tasks(other, alice)
        assert alice.session.delete(other.url(f"/api/v1/tasks/{task['id']}")).status_code == 200
    else:
        assert alice.session.delete(other.dav("downloads/slow.url")).status_code == 204
    # The runner notices at its next renewal (lease/3), stops and frees the temporary data.
    wait_for(lambda: not cluster.temp_files(), timeout=30, message="the runner stopped and freed the data")
    assert [task["state"] for task in tasks(runner, alice)] == ["cancelled"]
    assert not (cluster.space("alice") / "downloads" / "slow.bin").exists()
    assert origin.bytes_sent("/slow.bin") < SIZE
    assert "cancelled or taken over by another node" in runner.log_text()
