"""Live events across nodes on PostgreSQL: the `engine.events.Notifier` over `LISTEN/NOTIFY`.

Every node sends on one channel and listens on it with one connection of its own, held by a
thread (which also listens on a channel of the node's own, where the node's stop wakes it).
A message is a small JSON object: the sending process (`o`, a random token, so that a node
skips its own messages: it has already woken its streams), the user (`u`) and, for a
transient event only, its kind (`k`) and data (`d`). A stored event travels as its user alone:
streams read it from the shared `events` table, so the payload never holds a stored event's
contents. Progress data is the user's own task; where it would not fit PostgreSQL's payload
limit it goes without its names, and where even that does not fit it stays on this node (the
next stored event supersedes it).

`notify` runs `pg_notify` through the database's own `write()`: inside a transaction it is sent
when that commits, so no node hears of an event before it can read it. The listening thread
reconnects with growing back-off when PostgreSQL restarts or the connection drops, and then
wakes every stream, which reads the table again and so misses nothing stored meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
from typing import Any, Callable

import psycopg

from engine.database import Database
from engine.events import Event

__all__ = ["APPLICATION_NAME", "CHANNEL", "PostgresNotifier"]

_log = logging.getLogger(__name__)

CHANNEL = "fetchdrive_events"
APPLICATION_NAME = "fetchdrive events listener"  # how the listening connections show in pg_stat_activity
PAYLOAD_LIMIT = 7999  # bytes; PostgreSQL refuses a NOTIFY payload of 8000 or more
_NAMES = ("name", "folder", "path", "error")  # what a progress event sheds to fit the limit
_STOP_CHECK = 1.0  # seconds between looks at whether the node is stopping, if its wake-up note is lost
_IDLE_CHECK = 5.0  # seconds without news after which the listening connection is checked
_FIRST_RETRY, _LONGEST_RETRY = 0.5, 10.0  # back-off between reconnections, seconds
# A connection whose peer vanished without closing it is given up after about 10 s.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


def encode(origin: str, user: str, flash: Event | None) -> str | None:
    """The NOTIFY payload, or None when even a slimmed transient event would not fit."""
    message: dict[str, Any] = {"o": origin, "u": user}
    if flash is not None:
        message.update(k=flash.kind, d=flash.data)
    for attempt in (message, {**message, "d": {k: v for k, v in message.get("d", {}).items() if k not in _NAMES}}):
        payload = json.dumps(attempt, separators=(",", ":"))
        if len(payload.encode()) <= PAYLOAD_LIMIT:
            return payload
    return None


def decode(payload: str) -> tuple[str, str, Event | None] | None:
    """(origin, user, transient event or None) from a payload; None if it is not one of ours."""
    try:
        message = json.loads(payload)
        origin, user = message["o"], message["u"]
        flash = Event(message["k"], message["d"]) if "k" in message else None
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(origin, str) and isinstance(user, str)):
        return None
    return origin, user, flash


class PostgresNotifier:
    """One node's `LISTEN` connection and its `NOTIFY`s (see the module docstring)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._origin = secrets.token_hex(8)
        # This node's own channel, on which `close` wakes the listening thread.
        self._wake_channel = f"{CHANNEL}_{self._origin}"
        self._callbacks: list[Callable[[str | None, Event | None], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self, user: str, flash: Event | None = None) -> None:
        payload = encode(self._origin, user, flash)
        if payload is None:
            return
        try:
            with self._database.write() as db:
                db.execute("select pg_notify(?, ?)", [CHANNEL, payload])
        except psycopg.Error as error:
            # The news is lost, not the event: other nodes' streams read the table at their next keep-alive.
            _log.warning("could not tell the other nodes of an event: %s", " ".join(str(error).split()))

    def listen(self, callback: Callable[[str | None, Event | None], None]) -> None:
        self._callbacks.append(callback)
        if self._thread is None:
            self._thread = threading.Thread(target=self._listen, name="events-listen", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # Without it, every stop of a node waited up to _STOP_CHECK for the listener's wait to end.
            with contextlib.suppress(psycopg.Error):
                with self._database.write() as db:
                    db.execute("select pg_notify(?, '')", [self._wake_channel])
            self._thread.join(timeout=_STOP_CHECK + 5)

    def _listen(self) -> None:
        delay = _FIRST_RETRY
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._database.url, autocommit=True, connect_timeout=10,
                                     application_name=APPLICATION_NAME, **_KEEPALIVES) as conn:
                    conn.execute(f"listen {CHANNEL}")
                    conn.execute(f"listen {self._wake_channel}")
                    delay = _FIRST_RETRY
                    self._tell(None, None)  # what came while no connection listened is in the table
                    self._receive(conn)
            except psycopg.Error as error:
                if self._stop.is_set():
                    return
                _log.warning("listening for other nodes' events failed (%s); trying again in %.1f s",
                             " ".join(str(error).split()), delay)
            self._stop.wait(delay)
            delay = min(delay * 2, _LONGEST_RETRY)

    def _receive(self, conn: psycopg.Connection) -> None:
        idle = 0.0
        while not self._stop.is_set():
            idle += _STOP_CHECK
            for note in conn.notifies(timeout=_STOP_CHECK):
                if note.channel == self._wake_channel:
                    break  # (only close() sends there: the loop sees the node stopping)
                idle = 0.0
                message = decode(note.payload)
                if message is not None and message[0] != self._origin:
                    self._tell(message[1], message[2])
            if idle >= _IDLE_CHECK:
                idle = 0.0
                conn.execute("select 1")  # a dropped connection raises here rather than going unnoticed

    def _tell(self, user: str | None, flash: Event | None) -> None:
        for callback in self._callbacks:
            callback(user, flash)
