"""Slows password guessing: after a few wrong passwords for one user from one address,
further attempts from there are refused outright for a growing while.

Keyed by (user, client address) so an attacker elsewhere cannot lock the owner out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

FREE_ATTEMPTS = 5
FIRST_LOCKOUT = 2.0
LONGEST_LOCKOUT = 300.0


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Counts consecutive failures per (user, address) and says when to refuse."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._lock = threading.Lock()

    def locked_for(self, user: str, address: str) -> float:
        """Seconds until `user` may try again from `address`; 0 when they may now."""
        with self._lock:
            record = self._records.get((user, address))
            return max(0.0, record.locked_until - self._clock()) if record else 0.0

    def failed(self, user: str, address: str) -> None:
        with self._lock:
            if len(self._records) > 100_000:
                self._forget_expired()
            record = self._records.setdefault((user, address), _Record())
            record.failures += 1
            if record.failures >= FREE_ATTEMPTS:
                wait = min(LONGEST_LOCKOUT, FIRST_LOCKOUT * 2 ** (record.failures - FREE_ATTEMPTS))
                record.locked_until = self._clock() + wait

    def succeeded(self, user: str, address: str) -> None:
        with self._lock:
            self._records.pop((user, address), None)

    def _forget_expired(self) -> None:
        now = self._clock()
        for key in [key for key, rec in self._records.items() if rec.locked_until < now - LONGEST_LOCKOUT]:
            del self._records[key]
