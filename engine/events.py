"""Live events: what changed in one user's tasks and files, for `/api/v1/events` (SPEC 6).

An event is a kind (`task.created`, `task.state`, `task.done`, `task.failed`,
`task.cancelled`, `task.progress`, `file.created`, `file.changed`, `file.moved`,
`file.deleted`, `device.send`) and a small JSON object. Durable events are numbered per user
(1, 2, 3...; numbers say nothing about other users) and kept in the `events` table, the last
`history` of them per user, so a client that lost its connection, or a server restart,
resumes from `Last-Event-ID` without missing one. A client further behind than the history
gets `resync`. Progress is transient: it has no number, is not stored, and is rate-limited
per task, since the next durable event (or the task list) supersedes it.

`EventLog` wakes the streams of its own node directly; a `Notifier` carries the same news to
the streams of the other nodes sharing the database: `LocalNotifier` (one node, the embedded
database: nothing to carry) or `engine.pg_notifier.PostgresNotifier` (PostgreSQL
`LISTEN/NOTIFY`). It carries who has a new stored event, never the event itself (streams read
that from the shared table), and the transient progress events, which exist nowhere else.
Several processes on one SQLite file have no notifier between them: a stream there reads the
table at each keep-alive, so stored events reach it within `events.keepalive` seconds, and
progress stays on the process that runs the download.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Collection, Protocol

from engine.database import Database
from engine.events_table import EventRepository, SqliteEvents
from engine.tasks import FINISHED, Task

PROGRESS_INTERVAL = 0.5  # at most 2 progress events a second per task
_FLASH_BACKLOG = 200  # transient events a slow stream may hold before the oldest are dropped


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]
    id: int | None = None  # None: transient (progress), not resumable

    def sse(self) -> bytes:
        """The event in text/event-stream framing."""
        head = f"id: {self.id}\n" if self.id is not None else ""
        return f"{head}event: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n".encode()


class Notifier(Protocol):
    """The other nodes' side of an `EventLog`."""

    def notify(self, user: str, flash: Event | None = None) -> None:
        """Tell every other node: `user` has a new stored event, or (`flash`) a transient one."""

    def listen(self, callback: Callable[[str | None, Event | None], None]) -> None:
        """Call `callback(user, flash)` for what other nodes `notify`, and `callback(None, None)`
        when some news may have been lost (every stream should read the table again)."""

    def close(self) -> None: ...


class LocalNotifier:
    """The notifier of a single node: there is no other node to tell."""

    def notify(self, user: str, flash: Event | None = None) -> None:
        pass

    def listen(self, callback: Callable[[str | None, Event | None], None]) -> None:
        pass

    def close(self) -> None:
        pass


def notifier_for(database: Database) -> Notifier:
    """The notifier that reaches the other nodes sharing `database`."""
    if database.dialect == "postgresql":
        from engine.pg_notifier import PostgresNotifier  # psycopg is needed only by PostgreSQL drives

        return PostgresNotifier(database)
    return LocalNotifier()


class Subscription:
    """One open stream: wakes on the user's events and holds transient ones until sent."""

    def __init__(self, user: str, device: str | None = None) -> None:
        self.user = user
        self.device = device  # the device that follows this stream, if it said so
        self._cond = threading.Condition()
        self._flashes: deque[Event] = deque(maxlen=_FLASH_BACKLOG)
        self._stored = False
        self.closed = False

    def wake(self, flash: Event | None = None) -> None:
        with self._cond:
            if flash is None:
                self._stored = True
            else:
                self._flashes.append(flash)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait(self, timeout: float) -> tuple[bool, list[Event]]:
        """Block until something happens or `timeout`: (new durable events?, transient events)."""
        with self._cond:
            if not (self._stored or self._flashes or self.closed):
                self._cond.wait(timeout)
            stored, self._stored = self._stored, False
            flashes = list(self._flashes)
            self._flashes.clear()
            return stored, flashes


class EventLog:
    """Stores, numbers and fans out the events of every user."""

    def __init__(self, database: Database, *, history: int, notifier: Notifier | None = None) -> None:
        self._events: EventRepository = SqliteEvents(database)
        self.history = history
        self._notifier = notifier or LocalNotifier()
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._closed = False
        # Last: the notifier may call back at once, from its own thread, and `_heard` needs the above.
        self._notifier.listen(self._heard)

    def publish(self, user: str, kind: str, data: dict[str, Any]) -> Event:
        """Store a durable event and wake the user's streams."""
        seq = self._events.append(user, kind, data, keep=self.history)
        self._wake_streams(user)
        self._notifier.notify(user)
        return Event(kind, data, seq)

    def flash(self, user: str, kind: str, data: dict[str, Any]) -> None:
        """Hand a transient event to the user's open streams, on this node and the others."""
        event = Event(kind, data)
        self._wake_streams(user, event)
        self._notifier.notify(user, event)

    def latest(self, user: str) -> int:
        return self._events.latest(user)

    def since(self, user: str, after: int, limit: int = 500) -> list[Event] | None:
        """Durable events after number `after`, oldest first; None if some are no longer kept
        (or `after` is not a number this user's history has reached): the client must resync."""
        found = self._events.since(user, after, limit)
        return None if found is None else [Event(kind, data, seq) for seq, kind, data in found]

    def forget_user(self, user: str) -> None:
        self._events.forget_user(user)

    # --- streams ------------------------------------------------------------

    def subscribe(self, user: str, device: str | None = None) -> Subscription:
        subscription = Subscription(user, device)
        with self._lock:
            if self._closed:
                subscription.closed = True
            self._subscriptions.setdefault(user, set()).add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            streams = self._subscriptions.get(subscription.user, set())
            streams.discard(subscription)
            if not streams:
                self._subscriptions.pop(subscription.user, None)

    def streams(self, user: str) -> int:
        return len(self._streams_of(user))

    def online_devices(self, user: str) -> set[str]:
        """Devices of `user` following a stream on this node now."""
        return {stream.device for stream in self._streams_of(user) if stream.device}

    def close(self) -> None:
        """End every open stream (the server is stopping); clients reconnect and resume."""
        with self._lock:
            self._closed = True
        for subscription in self._all_streams():
            subscription.close()
        self._notifier.close()

    def _streams_of(self, user: str) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.get(user, ()))

    def _all_streams(self) -> list[Subscription]:
        with self._lock:
            return [s for streams in self._subscriptions.values() for s in streams]

    def _wake_streams(self, user: str, flash: Event | None = None) -> None:
        for subscription in self._streams_of(user):
            subscription.wake(flash)

    def _heard(self, user: str | None, flash: Event | None) -> None:
        """News from another node; `user` None: wake every stream, it may have missed some."""
        if user is not None:
            self._wake_streams(user, flash)
            return
        for subscription in self._all_streams():
            subscription.wake()


def task_data(task: Task) -> dict[str, Any]:
    return {"id": task.id, "state": task.state, "name": task.display_name, "folder": task.folder,
            "path": task.path, "bytes_done": task.bytes_done, "bytes_total": task.bytes_total, "error": task.error}


class TaskEvents:
    """Turns task store changes into events: created, state changes, rate-limited progress;
    a finished download also announces its file, and `on_done` hears of it (devices)."""

    def __init__(self, log: EventLog, on_done: Callable[[Task], None]) -> None:
        self._log = log
        self._on_done = on_done
        self._lock = threading.Lock()
        self._last_progress: dict[int, float] = {}  # task id -> when its last progress event went out

    def changed(self, task: Task, fields: Collection[str]) -> None:
        """`fields`: the columns just written (all of them for a new task)."""
        if "id" in fields:
            kind = "task.created"
        elif "state" in fields:
            kind = f"task.{task.state}" if task.state in FINISHED else "task.state"
        elif "bytes_done" in fields and task.state not in FINISHED:
            with self._lock:
                now = time.monotonic()
                if now - self._last_progress.get(task.id, 0.0) < PROGRESS_INTERVAL:
                    return
                self._last_progress[task.id] = now
            self._log.flash(task.user, "task.progress", task_data(task))
            return
        else:
            return
        if task.state in FINISHED:
            with self._lock:
                self._last_progress.pop(task.id, None)
        self._log.publish(task.user, kind, task_data(task))
        if kind == "task.done" and task.path:
            self._log.publish(task.user, "file.created", {"path": task.path})
            self._on_done(task)
