"""Claims and leases without a server: which task a node may take (table-driven), renewal,
release, that of several nodes claiming at once each task goes to exactly one, and that the
scheduler renews its leases and stops a task that is no longer its own; on SQLite and on
PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.database import open_database
from engine.kinds import TaskState
from engine.scheduler import Running, Scheduler
from engine.tasks import RUNNING, Task, TaskStore

LEASE = 30.0

pytestmark = pytest.mark.both_databases


@pytest.fixture
def tasks(database_url: str, tmp_path: Path) -> Iterator[TaskStore]:
    opened = open_database(database_url, tmp_path)
    yield TaskStore(opened)
    opened.close()


def _add(tasks: TaskStore, user: str = "ann", source: str | None = None, **values) -> Task:
    task = tasks.add(user=user, source=source or f"http://origin.test/{time.monotonic_ns()}", kind="url",
                     folder="downloads", trigger_path=None, display_name="file")
    if values:
        tasks.update(task.id, **values)
    return tasks.get(task.id)


def _running(tasks: TaskStore, node: str, lease_left: float, **values) -> Task:
    """A task `node` runs, its lease ending `lease_left` seconds from now (negative: passed)."""
    return _add(tasks, **{"state": TaskState.DOWNLOADING, "node": node, "lease_until": time.time() + lease_left,
                           **values})


@dataclass
class Row:
    """Tasks already in the table (made by `setup`, oldest first), and which of them a claim by
    node `b` takes (an index into them, or None)."""

    setup: list[dict] = field(default_factory=list)
    per_user: int = 2
    takes: int | None = None


CLAIMS = {
    "the oldest queued task": Row([{}, {}], takes=0),
    "a waiting task whose time has come": Row([{"state": "waiting", "next_attempt_at": -1}], takes=0),
    "not a waiting task whose time is still to come": Row([{"state": "waiting", "next_attempt_at": 60}]),
    "a running task whose node's lease has passed": Row([{"node": "a", "lease": -1}], takes=0),
    "a verifying task whose node's lease has passed": Row([{"node": "a", "lease": -1, "state": "verifying"}], takes=0),
    "not a task another node holds under a live lease": Row([{"node": "a", "lease": 20}]),
    "nothing finished": Row([{"state": "done"}, {"state": "failed"}, {"state": "cancelled"}]),
    "not past the per-user limit counted over nodes": Row(
        [{"node": "a", "lease": 20}, {"node": "c", "lease": 20}, {}], per_user=2),
    "below the per-user limit, counting only live leases": Row(
        [{"node": "a", "lease": 20}, {"node": "c", "lease": -1}, {}], per_user=2, takes=1),
    "another user's task while one user is at the limit": Row(
        [{"node": "a", "lease": 20}, {}, {"user": "ben"}], per_user=1, takes=2),
    "the user running fewest first": Row(
        [{"node": "a", "lease": 20}, {}, {"user": "ben"}], per_user=2, takes=2),
    "not a source running on another node": Row([{"node": "a", "lease": 20, "source": "s"}, {"source": "s"}]),
    "a source whose only run has lost its lease": Row([{"node": "a", "lease": -1, "source": "s", "state": "verifying"},
                                                       {"source": "s"}], takes=0),
}


@pytest.mark.parametrize("row", CLAIMS.values(), ids=CLAIMS.keys())
def test_a_claim_takes(tasks: TaskStore, row: Row) -> None:
    made = []
    for spec in row.setup:
        spec = dict(spec)
        user, source = spec.pop("user", "ann"), spec.pop("source", None)
        if "next_attempt_at" in spec:
            spec["next_attempt_at"] += time.time()
        if "node" in spec:
            lease = spec.pop("lease")
            spec.setdefault("state", TaskState.DOWNLOADING)
            spec["lease_until"] = time.time() + lease
        made.append(_add(tasks, user=user, source=source, **spec))
    claimed = tasks.claim("b", lease=LEASE, per_user=row.per_user)
    if row.takes is None:
        assert claimed is None
        return
    assert claimed is not None and claimed.id == made[row.takes].id
    assert (claimed.state, claimed.node) == (TaskState.DOWNLOADING, "b")
    assert claimed.lease_until == pytest.approx(time.time() + LEASE, abs=5)


def test_renewal_extends_only_the_leases_the_node_still_holds(tasks: TaskStore) -> None:
    kept = _running(tasks, "a", 2)
    cancelled = _running(tasks, "a", 2)
    tasks.set_state_if(cancelled.id, RUNNING, state=TaskState.CANCELLED)
    taken = _running(tasks, "a", -1)
    assert tasks.claim("b", lease=LEASE, per_user=5).id == taken.id
    until = time.time() + LEASE
    assert tasks.renew("a", [kept.id, cancelled.id, taken.id], until) == {kept.id}
    assert tasks.get(kept.id).lease_until == until
    assert tasks.get(taken.id).node == "b"


@pytest.mark.parametrize("values", [
    {"state": TaskState.DONE},
    {"state": TaskState.WAITING},
    {"bytes_done": 7},
])
def test_a_node_that_lost_a_task_can_change_it_no_more(tasks: TaskStore, values: dict) -> None:
    lost = _running(tasks, "a", -1)
    assert tasks.claim("b", lease=LEASE, per_user=5).id == lost.id
    assert not tasks.set_state_if(lost.id, RUNNING, holder="a", **values)
    assert tasks.set_state_if(lost.id, RUNNING, holder="b", **values)


def test_release_requeues_the_nodes_own_tasks_and_no_others(tasks: TaskStore) -> None:
    own = [_running(tasks, "a", 20), _running(tasks, "a", -1, state=TaskState.VERIFYING)]
    from_before_nodes = _add(tasks, state=TaskState.DOWNLOADING)
    others = [_running(tasks, "b", 20), _running(tasks, "b", -1)]
    waiting = _add(tasks, state=TaskState.WAITING, node="a")
    assert tasks.release("a") == 3
    for task in [*own, from_before_nodes]:
        assert (tasks.get(task.id).state, tasks.get(task.id).node) == (TaskState.QUEUED, None)
    for task in others:
        assert (tasks.get(task.id).state, tasks.get(task.id).node) == (TaskState.DOWNLOADING, "b")
    assert tasks.get(waiting.id).state == TaskState.WAITING


@pytest.mark.parametrize("nodes, count", [(2, 40), (3, 60), (4, 30)])
def test_nodes_claiming_at_once_each_take_a_task_exactly_once(database_url: str, tmp_path: Path, nodes: int,
                                                              count: int) -> None:
    """Each node with its own connection to the database, as separate processes have."""
    setup = open_database(database_url, tmp_path)
    made = [_add(TaskStore(setup), user=f"user{number % 5}").id for number in range(count)]
    setup.close()
    taken: dict[str, list[int]] = {f"node{n}": [] for n in range(nodes)}
    go = threading.Barrier(nodes)

    def claim_all(name: str) -> None:
        database = open_database(database_url, tmp_path)
        tasks = TaskStore(database)
        go.wait()
        while (task := tasks.claim(name, lease=LEASE, per_user=count)) is not None:
            taken[name].append(task.id)
        database.close()

    threads = [threading.Thread(target=claim_all, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(task_id for ids in taken.values() for task_id in ids) == made


@pytest.mark.parametrize("per_user", [1, 2, 3])
def test_nodes_claiming_at_once_keep_the_per_user_limit(database_url: str, tmp_path: Path, per_user: int) -> None:
    setup = open_database(database_url, tmp_path)
    for _ in range(12):
        _add(TaskStore(setup))
    go = threading.Barrier(4)

    def claim_all(name: str) -> None:
        database = open_database(database_url, tmp_path)
        tasks = TaskStore(database)
        go.wait()
        while tasks.claim(name, lease=LEASE, per_user=per_user) is not None:
            pass
        database.close()

    threads = [threading.Thread(target=claim_all, args=(f"node{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with setup.read() as db:
        running = db.execute("select count(*) from tasks where state = ?", [TaskState.DOWNLOADING]).fetchone()[0]
    setup.close()
    assert running == per_user


@pytest.mark.parametrize("elsewhere", [
    {"state": TaskState.CANCELLED},  # a cancel on another node (API or trigger deleted)
    {"node": "b"},  # taken over: this node's lease had passed
    {"state": TaskState.QUEUED, "node": None},  # released by a restart of a node of the same name
])
def test_the_scheduler_renews_its_leases_and_stops_a_task_no_longer_its_own(tasks: TaskStore, elsewhere: dict) -> None:
    task = _add(tasks)
    started, stopped = threading.Event(), threading.Event()

    def run(claimed: Task, running: Running) -> None:  # the worker's one try: until told to stop
        started.set()
        if running.cancel.wait(30):
            stopped.set()

    scheduler = Scheduler(tasks, node="a", lease=0.6, workers=1, per_user=1, discard_temp=lambda task: None,
                          on_renewal=lambda: None)
    scheduler.start(run)
    try:
        assert started.wait(10)
        first_lease = tasks.get(task.id).lease_until
        deadline = time.monotonic() + 10
        while tasks.get(task.id).lease_until == first_lease and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tasks.get(task.id).lease_until > first_lease and not stopped.is_set()
        tasks.update(task.id, **elsewhere)
        assert stopped.wait(10)
    finally:
        scheduler.stop()
