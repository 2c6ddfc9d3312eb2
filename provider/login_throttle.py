"""Slows password guessing: after a few wrong passwords for one user from one address,
further attempts from there are refused outright for a growing while.

Keyed by (user, client address) so an attacker elsewhere cannot lock the owner out. The
counts live in the database (`login_failures`), so guessing on one node and then on another
is throttled as on one; times are wall-clock seconds, which every node shares.

A login with a remembered password (every request of a logged-in client) asks with
`recent=True`: the record read at most `FRESH` seconds ago will do, so the hot path reads the
database about once a second per client, not twice a request. A password being judged always
reads it, so guessing is counted and refused exactly.
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
FRESH = 1.0  # seconds a record read for a remembered login stays good enough


class LoginThrottle:
    """Counts consecutive failures per (user, address) and says when to refuse."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock
        self._failures_seen = itertools.count(1)
        self._count_lock = threading.Lock()
        # (user, address) -> (when read, locked_until, or None without a record)
        self._read: dict[tuple[str, str], tuple[float, float | None]] = {}

    def _locked_until(self, user: str, address: str, recent: bool) -> float | None:
        """The record's locked_until (None: no record), read now or, if `recent`, within FRESH seconds."""
        known = self._read.get((user, address)) if recent else None
        if known is not None and time.monotonic() - known[0] < FRESH:
            return known[1]
        rows = self._database.read_committed(
            "select locked_until from login_failures where name = ? and address = ?", [user, address])
        until = rows[0][0] if rows else None
        self._remember(user, address, until)
        return until

    def _remember(self, user: str, address: str, until: float | None) -> None:
        if len(self._read) > MOST_RECORDS:
            self._read.clear()
        self._read[(user, address)] = (time.monotonic(), until)

    def locked_for(self, user: str, address: str, *, recent: bool = False) -> float:
        """Seconds until `user` may try again from `address`; 0 when they may now."""
        until = self._locked_until(user, address, recent)
        return 0.0 if until is None else max(0.0, until - self._clock())

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        with self._database.write() as db:
            failures = db.execute(
                "insert into login_failures (name, address, failures, locked_until) values (?, ?, 1, 0) "
                "on conflict (name, address) do update set failures = login_failures.failures + 1 "
                "returning failures", [user, address]).fetchone()[0]
            until = 0.0
            if failures >= FREE_ATTEMPTS:
                until = now + min(LONGEST_LOCKOUT, FIRST_LOCKOUT * 2 ** min(failures - FREE_ATTEMPTS, 32))
                db.execute("update login_failures set locked_until = ? where name = ? and address = ?",
                           [until, user, address])
        self._remember(user, address, until)
        with self._count_lock:
            sweep = next(self._failures_seen) % SWEEP_EVERY == 0
        if sweep:
            self._forget_expired(now)

    def succeeded(self, user: str, address: str, *, recent: bool = False) -> None:
        # Every request of a logged-in client ends here: write only when there is a record.
        if self._locked_until(user, address, recent) is not None:
            with self._database.write() as db:
                db.execute("delete from login_failures where name = ? and address = ?", [user, address])
            self._remember(user, address, None)

    def _forget_expired(self, now: float) -> None:
        with self._database.write() as db:
            if db.execute("select count(*) from login_failures").fetchone()[0] > MOST_RECORDS:
                db.execute("delete from login_failures where locked_until < ?", [now - LONGEST_LOCKOUT])
