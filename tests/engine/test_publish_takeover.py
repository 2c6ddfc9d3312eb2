"""Publishing when another node takes the task over meanwhile, without a server.

Node a has checked that it holds the task and is linking the file into the user's folder when
it loses its lease (it stalled) and node b takes the task over. Before this, a took its link
back as it found the task no longer its own; now that b looks for a link made before it took
over (engine/delivery.py `_published_before`), b may already have made that link its
finished file, so a leaves it. The stall falls between the two steps: a waits on the path
lock that the test holds while b claims the task. Real parts throughout (task store, space
writer, path and quota locks, allowances) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from engine.allowances import Allowances
from engine.catalog import Catalog
from engine.cluster_locks import cluster_locks
from engine.content_store import ContentStore
from engine.database import open_database
from engine.delivery import Delivery
from engine.fetcher import Fetcher
from engine.kinds import TaskState
from engine.nodes import Nodes
from engine.notifications import Notifier
from engine.tasks import Task, TaskStore
from engine.temp_area import TempArea
from provider.accounts import Accounts
from provider.path_locks import PathLocks
from provider.quota import Quota
from provider.space_writer import SpaceWriter

pytestmark = pytest.mark.both_databases

BODY = b"finished bytes " * 1000


class Node:
    """What one node publishes with: its own delivery over the shared database and root."""

    def __init__(self, name: str, database_url: str, root: Path) -> None:
        self.name = name
        self.database = open_database(database_url, root)
        accounts = Accounts(self.database, root)
        if accounts.get("carol") is None:
            accounts.add("carol", "carol-password-1", 10 * 1024 * 1024)
        self.quota = Quota(self.database, accounts, Nodes(self.database, name, 30),
                           cluster_locks(self.database, root, "users", 4), root, None)
        self.writer = SpaceWriter(self.quota, PathLocks(cluster_locks(self.database, root, "paths", 4), root / "spaces"),
                                  root / "uploads", lambda user: root / "spaces" / user, None)
        self.tasks = TaskStore(self.database)
        allowances = Allowances(self.writer, self.tasks)
        temp = TempArea(root / "tmp", self.tasks, allowances, self.writer)
        self.delivery = Delivery(self.tasks, ContentStore(root / "store"), self.writer, allowances, temp,
                                 Notifier(allow_private=True), fetcher=Fetcher(requests.Session(), connect_timeout=5,
                                                                               read_timeout=5),
                                 catalog=Catalog(self.database), mirrors=(), cache_ttl=0, trigger_finished=lambda task: None)

    def claim(self) -> Task:
        task = self.tasks.claim(self.name, lease=30, per_user=5)
        assert task is not None, f"node {self.name} claimed nothing"
        return task


@pytest.fixture
def nodes(database_url: str, tmp_path: Path) -> Iterator[tuple[Node, Node]]:
    (tmp_path / "spaces" / "carol" / "downloads").mkdir(parents=True)
    (tmp_path / "uploads").mkdir()
    pair = Node("a", database_url, tmp_path), Node("b", database_url, tmp_path)
    yield pair
    for node in pair:
        node.database.close()


def publish_stalled(node: Node, task: Task, part: Path, name: str, meanwhile: Callable[[], None]) -> Path | None:
    """`node` publishes `part` as `name` for `task`, held up on the path lock (which this holds)
    after its check that it holds the task, while `meanwhile` runs; what publish returned."""
    published: list[Path | None] = []
    with node.writer.locked(node.writer.root(task.user) / task.folder / name):
        publishing = threading.Thread(target=lambda: published.append(
            node.delivery.publish(task, part, name, digest=None, instant=False)))
        publishing.start()
        time.sleep(0.5)
        assert publishing.is_alive(), "the publish did not wait for the path"
        meanwhile()
    publishing.join(timeout=30)
    return published[0]


def claimed_with_its_file(node: Node, root: Path, name: str) -> tuple[Task, Path]:
    node.tasks.add(user="carol", source=f"http://origin.test/{name}", kind="url", folder="downloads",
                   trigger_path=None, display_name=name)
    task = node.claim()
    part = root / "tmp" / f"{task.id}.part"  # the shared temporary file any node resumes
    part.write_bytes(BODY)
    return task, part


def test_a_node_that_lost_its_task_while_linking_leaves_the_link_for_the_node_that_took_it_over(nodes, tmp_path):
    a, b = nodes
    downloads = tmp_path / "spaces" / "carol" / "downloads"
    task, part = claimed_with_its_file(a, tmp_path, "film.bin")
    taken: list[Task] = []

    def stalled_and_taken_over() -> None:
        a.tasks.update(task.id, lease_until=time.time() - 1)
        taken.append(b.claim())

    assert publish_stalled(a, task, part, "film.bin", stalled_and_taken_over) is None  # a gives the task up
    assert sorted(path.name for path in downloads.iterdir()) == ["film.bin"]  # its link stays

    assert b.delivery.publish(taken[0], part, "film.bin", digest=None, instant=False) == downloads / "film.bin"
    done = b.tasks.get(task.id)
    assert (done.state, done.node, done.path, done.publishing_to) == (TaskState.DONE, "b", "downloads/film.bin", None)
    assert sorted(path.name for path in downloads.iterdir()) == ["film.bin"]  # found, not published again
    assert (downloads / "film.bin").read_bytes() == BODY
    assert b.quota.used("carol") == len(BODY)  # booked once, by a's link


def test_a_node_whose_task_was_cancelled_while_linking_takes_the_link_back(nodes, tmp_path):
    a, _ = nodes
    task, part = claimed_with_its_file(a, tmp_path, "gone.bin")
    assert publish_stalled(a, task, part, "gone.bin", lambda: a.tasks.update(task.id, state=TaskState.CANCELLED)) is None
    assert list((tmp_path / "spaces" / "carol" / "downloads").iterdir()) == []
    assert a.quota.used("carol") == 0
