"""When to try a failed task again: tenacity's exponential back-off with jitter, Retry-After
honoured, and a give-up deadline counted from the first failure.

Waits are not slept in a worker thread: the task is parked as `waiting` with a
`next_attempt_at` in the database, so a long outage holds no worker and survives restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState, wait_exponential_jitter


@dataclass(frozen=True)
class RetryPolicy:
    initial: float
    max_wait: float
    give_up_after: float

    def wait_before(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempt`-th failed try (1-based)."""
        strategy = wait_exponential_jitter(initial=self.initial, max=self.max_wait, jitter=self.initial)
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        wait = float(strategy(state))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_wait))
        return wait

    def gives_up(self, first_failure_at: float, now: float) -> bool:
        return now - first_failure_at >= self.give_up_after


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
