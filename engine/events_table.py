"""The `events` and `event_users` tables behind `EventRepository`: each user's durable
events, numbered 1, 2, 3... per user, the last `keep` of them kept. `engine.events` fans
them out; `SqliteEvents` holds the SQL, for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol, runtime_checkable

from engine.database import Database

StoredEvent = tuple[int, str, dict[str, Any]]  # number, kind, data


@runtime_checkable
class EventRepository(Protocol):
    def append(self, user: str, kind: str, data: dict[str, Any], *, keep: int) -> int:
        """Store the user's next event and drop all but the last `keep`; its number."""
    def latest(self, user: str) -> int:
        """The number of the user's newest event (0: none yet)."""
    def since(self, user: str, after: int, limit: int) -> list[StoredEvent] | None:
        """Events after number `after`, oldest first; None if some are no longer kept (or
        `after` is a number the user's history has not reached)."""
    def forget_user(self, user: str) -> None: ...


class SqliteEvents:
    """The `EventRepository` (on either database)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def append(self, user: str, kind: str, data: dict[str, Any], *, keep: int) -> int:
        with self._database.write() as db:
            # Numbering and row lock in one statement: concurrent appends for one user (other
            # threads, other nodes) wait for each other instead of taking the same number.
            seq, floor = db.execute(
                'insert into event_users ("user", last_seq, floor) values (?, 1, 0) '
                'on conflict ("user") do update set last_seq = event_users.last_seq + 1 returning last_seq, floor',
                [user]).fetchone()
            db.execute('insert into events ("user", seq, kind, data, created_at) values (?, ?, ?, ?, ?)',
                       [user, seq, kind, json.dumps(data), time.time()])
            if seq - keep > floor:
                floor = seq - keep
                db.execute('delete from events where "user" = ? and seq <= ?', [user, floor])
                db.execute('update event_users set floor = ? where "user" = ?', [floor, user])
        return seq

    def latest(self, user: str) -> int:
        rows = self._database.read_committed('select last_seq from event_users where "user" = ?', [user])
        return rows[0][0] if rows else 0

    def since(self, user: str, after: int, limit: int) -> list[StoredEvent] | None:
        rows = self._database.read_committed('select last_seq, floor from event_users where "user" = ?', [user])
        last, floor = rows[0] if rows else (0, 0)
        if after < floor or after > last:
            return None
        found = self._database.read_committed(
            'select seq, kind, data from events where "user" = ? and seq > ? order by seq limit ?', [user, after, limit])
        return [(seq, kind, json.loads(data)) for seq, kind, data in found]

    def forget_user(self, user: str) -> None:
        with self._database.write() as db:
            db.execute('delete from events where "user" = ?', [user])
            db.execute('delete from event_users where "user" = ?', [user])
