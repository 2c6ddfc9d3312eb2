"""Slows password guessing: after a few wrong passwords for one user from one address,
further attempts from there are refused outright for a growing while.

Keyed by (user, client address) so an attacker elsewhere cannot lock the owner out. The
counts live in the database (`login_failures`), so guessing on one node and then on another
is throttled as on one; times are wall-clock seconds, which every node shares.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Callable

from engine.database import Database

FREE_ATTEMPTS = 5
FIRST_LOCKOUT = 2.0
LONGEST_LOCKOUT = 300.0
# Past this many records, those long expired are forgotten (checked every SWEEP_EVERY failures).
MOST_RECORDS = 100_000
SWEEP_EVERY = 1000


class LoginThrottle:
    """Counts consecutive failures per (user, address) and says when to refuse."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock
        self._failures_seen = itertools.count(1)
        self._count_lock = threading.Lock()

    def locked_for(self, user: str, address: str) -> float:
        """Seconds until `user` may try again from `address`; 0 when they may now."""
        rows = self._database.read_committed(
            "select locked_until from login_failures where name = ? and address = ?", [user, address])
        return max(0.0, rows[0][0] - self._clock()) if rows else 0.0

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        with self._database.write() as db:
            failures = db.execute(
                "insert into login_failures (name, address, failures, locked_until) values (?, ?, 1, 0) "
                "on conflict (name, address) do update set failures = login_failures.failures + 1 "
                "returning failures", [user, address]).fetchone()[0]
            if failures >= FREE_ATTEMPTS:
                wait = min(LONGEST_LOCKOUT, FIRST_LOCKOUT * 2 ** min(failures - FREE_ATTEMPTS, 32))
                db.execute("update login_failures set locked_until = ? where name = ? and address = ?",
                           [now + wait, user, address])
        with self._count_lock:
            sweep = next(self._failures_seen) % SWEEP_EVERY == 0
        if sweep:
            self._forget_expired(now)

    def succeeded(self, user: str, address: str) -> None:
        # Every request of a logged-in client ends here: write only when there is a record.
        if self._database.read_committed("select 1 from login_failures where name = ? and address = ?",
                                         [user, address]):
            with self._database.write() as db:
                db.execute("delete from login_failures where name = ? and address = ?", [user, address])

    def _forget_expired(self, now: float) -> None:
        with self._database.write() as db:
            if db.execute("select count(*) from login_failures").fetchone()[0] > MOST_RECORDS:
                db.execute("delete from login_failures where locked_until < ?", [now - LONGEST_LOCKOUT])
