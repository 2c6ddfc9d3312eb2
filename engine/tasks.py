"""The task table: one row per download, its state and everything needed to resume it.

States (SPEC 6): queued -> downloading -> verifying -> done, with `waiting` between tries
and `failed` / `cancelled` as the other ends. Every change is committed at once, so a
`kill -9` loses at most the progress figure of the last half second, never a task.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable

from engine.database import Database
from engine.kinds import SourceKind, TaskState
from engine.schema import SAME_REQUEST, columns, from_row

UNFINISHED = (TaskState.QUEUED, TaskState.DOWNLOADING, TaskState.WAITING, TaskState.VERIFYING)
RUNNING = (TaskState.DOWNLOADING, TaskState.VERIFYING)  # held by a node, under a lease
FINISHED = (TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED)


@dataclass
class Task:
    id: int
    user: str
    source: str
    kind: SourceKind
    folder: str  # where the file lands, relative to the space, e.g. "downloads/music"
    trigger_path: str | None  # e.g. "downloads/music/song.url"; None for API tasks
    state: TaskState
    display_name: str
    sha256_expected: str | None = None
    filename_hint: str | None = None
    bytes_done: int = 0
    bytes_total: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    temp_path: str | None = None
    attempts: int = 0
    next_attempt_at: float | None = None
    first_failure_at: float | None = None
    error: str | None = None
    path: str | None = None
    sha256: str | None = None
    instant: int = 0
    segments: str | None = None  # JSON [[start, end, done], ...] of a segmented transfer
    fetched_url: str | None = None  # the URL the content came from: the source, or the one behind an ID
    superseded_by: int | None = None  # a later task of the same trigger and source that finished
    send_to: str | None = None  # comma-separated devices that receive the finished file
    publishing_to: str | None = None  # where its file goes, from just before the link until done
    # JSON [[name, value], ...]: the trigger's header= lines and its URL's Basic login (SPEC 4c).
    # A secret: never shown, logged or returned by the API.
    origin_headers: str | None = field(default=None, repr=False)
    node: str | None = None  # the node running it (server.node), while downloading or verifying
    lease_until: float | None = None  # another node may take it over after this (engine.lease)
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None

    @property
    def unfinished(self) -> bool:
        return self.state in UNFINISHED


# The table's columns are the dataclass's fields (tests/test_schema.py holds them equal).
_COLUMNS = columns(Task)


class _OverLimit(Exception):
    """A claim that would exceed engine.per_user (see TaskStore._hold_per_user_limit)."""


class TaskStore:
    """All reads and writes of the `tasks` table: the `engine.repository.TaskRepository`."""

    def __init__(self, database: Database) -> None:
        self._database = database
        # Told of every write with the columns it set (live events: engine.events.TaskEvents).
        self.on_change: Callable[[Task, Collection[str]], None] = lambda task, fields: None

    @staticmethod
    def _task(row: dict[str, Any]) -> Task:
        task = from_row(Task, row)
        task.state, task.kind = TaskState(task.state), SourceKind(task.kind)
        return task

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Task]:
        with self._database.read() as db:
            return [self._task(row) for row in db.query(sql, list(params))]

    def add(self, **values: Any) -> Task:
        now = time.time()
        values = {"state": TaskState.QUEUED, "bytes_done": 0, "attempts": 0, "instant": 0, **values}
        values.update(created_at=now, updated_at=now)
        names = ", ".join(f'"{name}"' for name in values)
        marks = ", ".join("?" for _ in values)
        with self._database.write() as db:
            task_id = db.execute(f"insert into tasks ({names}) values ({marks}) returning id",
                                 list(values.values())).fetchone()[0]
        task = self.get(task_id)
        self.on_change(task, _COLUMNS)
        return task

    def get(self, task_id: int) -> Task | None:
        found = self._query("select * from tasks where id = ?", [task_id])
        return found[0] if found else None

    def update(self, task_id: int, **values: Any) -> None:
        values["updated_at"] = time.time()
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        with self._database.write() as db:
            db.execute(f"update tasks set {assignments} where id = ?", [*values.values(), task_id])
        self._changed(task_id, values)

    def _changed(self, task_id: int, values: dict[str, Any]) -> None:
        task = self.get(task_id)
        if task is not None:
            self.on_change(task, values.keys())

    def set_state_if(self, task_id: int, expected: Iterable[TaskState], *, holder: str | None = None,
                     **values: Any) -> bool:
        """Update only while the task is still in one of `expected` (a cancel may have won) and,
        with `holder`, still held by that node (another may have taken it over)."""
        expected = list(expected)
        values["updated_at"] = time.time()
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        marks = ", ".join("?" for _ in expected)
        held = "" if holder is None else " and node = ?"
        with self._database.write() as db:
            cursor = db.execute(
                f"update tasks set {assignments} where id = ? and state in ({marks}){held}",
                [*values.values(), task_id, *expected, *([] if holder is None else [holder])],
            )
            changed = cursor.rowcount == 1
        if changed:
            self._changed(task_id, values)
        return changed

    def for_user(self, user: str, *, state: TaskState | None = None, before_id: int | None = None, limit: int = 100) -> list[Task]:
        """The user's tasks, newest first, without failures a later task has made good."""
        sql, params = 'select * from tasks where "user" = ? and superseded_by is null', [user]
        if state:
            sql += " and state = ?"
            params.append(state)
        if before_id is not None:
            sql += " and id < ?"
            params.append(before_id)
        sql += " order by id desc limit ?"
        params.append(limit)
        return self._query(sql, params)

    def unfinished_for_user(self, user: str) -> list[Task]:
        marks = ", ".join("?" for _ in UNFINISHED)
        return self._query(f'select * from tasks where "user" = ? and state in ({marks}) order by id', [user, *UNFINISHED])

    def users_with_unfinished(self) -> set[str]:
        marks = ", ".join("?" for _ in UNFINISHED)
        with self._database.read() as db:
            return {row[0] for row in db.execute(f'select distinct "user" from tasks where state in ({marks})', UNFINISHED)}

    def unfinished_in_folder(self, user: str, folder: str) -> list[Task]:
        marks = ", ".join("?" for _ in UNFINISHED)
        return self._query(
            f'select * from tasks where "user" = ? and folder = ? and state in ({marks}) order by id',
            [user, folder, *UNFINISHED],
        )

    def for_trigger(self, user: str, trigger_path: str) -> list[Task]:
        return self._query(
            'select * from tasks where "user" = ? and trigger_path = ? order by id', [user, trigger_path]
        )

    def in_folder_for_sources(self, user: str, folder: str, sources: Iterable[str]) -> list[Task]:
        """The user's tasks that fetch one of `sources` into `folder`, oldest first."""
        sources = list(sources)
        marks = ", ".join("?" for _ in sources)
        return self._query(
            f'select * from tasks where "user" = ? and folder = ? and source in ({marks}) order by id',
            [user, folder, *sources],
        )

    def delivered_to(self, user: str, path: str) -> bool:
        """Whether a download made the file at `path` (e.g. an origin's `next.url`)."""
        with self._database.read() as db:
            return db.execute('select 1 from tasks where "user" = ? and path = ? limit 1', [user, path]).fetchone() is not None

    def under_trigger_prefix(self, user: str, prefix: str) -> list[Task]:
        """Unfinished tasks whose trigger is `prefix` or inside the folder `prefix`."""
        marks = ", ".join("?" for _ in UNFINISHED)
        return self._query(
            f'select * from tasks where "user" = ? and state in ({marks}) and '
            "(trigger_path = ? or substr(trigger_path, 1, ?) = ?)",
            [user, *UNFINISHED, prefix, len(prefix) + 1, prefix + "/"],
        )

    def claim(self, node: str, *, lease: float, per_user: int) -> Task | None:
        """Take the next task for `node` in one statement: it becomes downloading, held by `node`
        until now + `lease`. Runnable are queued tasks, waiting ones whose time has come and
        running ones whose lease has passed (their node is gone: this one resumes them). A user
        with `per_user` live leases over all nodes gets nothing more; of the others, the user
        running fewest goes first, then the oldest task. A source running anywhere waits, so
        that it is fetched once and the second task is delivered from the store."""
        now = time.time()
        live = "r.state in (?, ?) and r.lease_until >= ?"
        running_of_user = f'(select count(*) from tasks r where r."user" = t."user" and {live})'
        postgresql = self._database.dialect == "postgresql"
        # FOR UPDATE SKIP LOCKED: PostgreSQL nodes claim side by side, each passing over the
        # rows another is claiming; SQLite's write transaction is exclusive already.
        sql = (
            "update tasks set state = ?, node = ?, lease_until = ?, updated_at = ? where id = ("
            "select t.id from tasks t where (t.state = ? or (t.state = ? and t.next_attempt_at <= ?) "
            "or (t.state in (?, ?) and coalesce(t.lease_until, 0) < ?)) "
            f"and {running_of_user} < ? "
            f"and not exists (select 1 from tasks r where r.source = t.source and {live}) "
            f"order by {running_of_user}, t.id limit 1{' for update of t skip locked' if postgresql else ''}) "
            "returning *"
        )
        params = [TaskState.DOWNLOADING, node, now + lease, now,
                  TaskState.QUEUED, TaskState.WAITING, now, *RUNNING, now,
                  *RUNNING, now, per_user,
                  *RUNNING, now,
                  *RUNNING, now]
        try:
            with self._database.write() as db:
                rows = list(db.query(sql, params))
                if rows and postgresql:
                    self._hold_per_user_limit(db, rows[0]["user"], per_user, now)
        except _OverLimit:
            return None
        if not rows:
            return None
        task = self._task(rows[0])
        self.on_change(task, ("state", "node", "lease_until", "updated_at"))
        return task

    @staticmethod
    def _hold_per_user_limit(db: Any, user: str, per_user: int, now: float) -> None:
        """Two PostgreSQL nodes claiming for one user at once each count the other's claim as not
        yet made; a lock per user, then a recount that sees every claim committed before it,
        undoes the one that went over (raises _OverLimit, which rolls the claim back)."""
        key = int.from_bytes(hashlib.blake2b(f"claim:{user}".encode(), digest_size=8).digest(), "big", signed=True)
        db.execute("select pg_advisory_xact_lock(?)", [key])
        running = db.execute('select count(*) from tasks where "user" = ? and state in (?, ?) and lease_until >= ?',
                             [user, *RUNNING, now]).fetchone()[0]
        if running > per_user:
            raise _OverLimit

    def holds(self, task: Task) -> bool:
        """Whether the node that claimed `task` (task.node) still runs it: not cancelled, not
        taken over by another node."""
        current = self.get(task.id)
        return current is not None and current.state in RUNNING and current.node == task.node

    def renew(self, node: str, task_ids: Collection[int], until: float) -> set[int]:
        """Extend to `until` the lease of those of `task_ids` that `node` still runs, and say
        which those are: a task missing was cancelled, or taken over by another node. Not
        reported to `on_change`: a lease is nothing a user sees."""
        marks = ", ".join("?" for _ in task_ids)
        with self._database.write() as db:
            rows = db.execute(
                f"update tasks set lease_until = ? where node = ? and state in (?, ?) and id in ({marks}) returning id",
                [until, node, *RUNNING, *task_ids],
            ).fetchall()
        return {row[0] for row in rows}

    def next_wake(self) -> float | None:
        with self._database.read() as db:
            row = db.execute("select min(next_attempt_at) from tasks where state = ?", [TaskState.WAITING]).fetchone()
        return row[0] if row else None

    def release(self, node: str) -> int:
        """The tasks `node` runs go back to the queue: at its start (what it ran before a crash
        resumes at once, not after the lease) and at its stop (another node may take them).
        Other nodes' tasks stay theirs; a running task with no node is from before nodes."""
        with self._database.write() as db:
            return db.execute(
                "update tasks set state = ?, node = null, lease_until = null, updated_at = ? "
                "where state in (?, ?) and (node = ? or node is null)",
                [TaskState.QUEUED, time.time(), *RUNNING, node],
            ).rowcount

    def delete_user(self, user: str) -> None:
        with self._database.write() as db:
            db.execute('delete from tasks where "user" = ?', [user])

    def finished_source(self, source: str, since: float) -> list[Task]:
        return self._query(
            "select * from tasks where source = ? and state = ? and finished_at >= ? "
            "order by finished_at desc limit 5",
            [source, TaskState.DONE, since],
        )

    def finished_from_url(self, url: str, since: float) -> list[Task]:
        """Recent finished tasks whose content came from `url` (whatever their source)."""
        return self._query(
            "select * from tasks where fetched_url = ? and state = ? and finished_at >= ? "
            "order by finished_at desc limit 5",
            [url, TaskState.DONE, since],
        )

    def supersede(self, done_id: int) -> None:
        """Failed or cancelled tasks of the same request (trigger or API call) are made good by
        the finished task `done_id`: they leave the listings and cannot be retried into a second copy."""
        with self._database.write() as db:
            db.execute(
                "update tasks set superseded_by = ?, updated_at = ? where state in (?, ?) and "
                f"exists (select 1 from tasks other where other.id = ? and {SAME_REQUEST})",
                [done_id, time.time(), TaskState.FAILED, TaskState.CANCELLED, done_id],
            )

    def other_unfinished(self, task_id: int) -> Task | None:
        """An unfinished task of the same request (trigger or API call) as `task_id`, if any."""
        marks = ", ".join("?" for _ in UNFINISHED)
        found = self._query(
            f"select other.* from tasks, tasks other where tasks.id = ? and {SAME_REQUEST} "
            f"and other.state in ({marks}) limit 1",
            [task_id, *UNFINISHED],
        )
        return found[0] if found else None
