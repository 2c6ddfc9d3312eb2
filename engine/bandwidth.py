"""Bandwidth caps (`engine.rate_limit`, `engine.per_user_rate_limit`): token buckets that
make a download thread sleep just long enough to stay under the rate, shared by all the
segments and tasks they cover. Nodes sharing one database split each cap evenly: each runs
its buckets at the cap divided by the number of nodes alive (`Bandwidth.share`)."""

from __future__ import annotations

import threading
import time


class TokenBucket:
    """Allows `rate` bytes per second on average, with bursts of at most `burst` bytes."""

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self._rate = float(rate)
        self._burst = float(burst if burst is not None else max(rate // 4, 64 * 1024))
        self._tokens = self._burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self._rate = float(rate)

    def consume(self, amount: int) -> None:
        """Take `amount` bytes' worth of tokens, sleeping while the bucket is in debt."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            self._tokens -= amount
            debt = -self._tokens
        if debt > 0:
            time.sleep(debt / self._rate)


class Bandwidth:
    """The server-wide bucket and one bucket per user; `throttle(user)` combines them."""

    def __init__(self, rate_limit: int | None, per_user_rate_limit: int | None) -> None:
        self._server = TokenBucket(rate_limit) if rate_limit else None
        self._rate_limit = rate_limit
        self._per_user_rate_limit = per_user_rate_limit
        self._nodes = 1
        self._users: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def share(self, nodes: int) -> None:
        """`nodes` nodes are alive (this one included): take an equal share of each cap."""
        with self._lock:
            self._nodes = max(1, nodes)
            if self._server is not None:
                self._server.set_rate(self._rate_limit / self._nodes)
            for bucket in self._users.values():
                bucket.set_rate(self._per_user_rate_limit / self._nodes)

    def _user_bucket(self, user: str) -> TokenBucket | None:
        if not self._per_user_rate_limit:
            return None
        with self._lock:
            if user not in self._users:
                self._users[user] = TokenBucket(self._per_user_rate_limit / self._nodes)
            return self._users[user]

    def throttle(self, user: str):
        buckets = [bucket for bucket in (self._server, self._user_bucket(user)) if bucket]

        def consume(amount: int) -> None:
            for bucket in buckets:
                bucket.consume(amount)

        return consume
