"""The engine's outcomes of a failed try, decided in one place.

    FetchError
     +-- TransientError    retried with back-off (refused/reset connections, time-outs,
     |                      DNS failures, HTTP 408, 429, 5xx); may carry Retry-After
     +-- PermanentError    the task fails and the trigger gets an `.error.txt`
                            (HTTP 4xx, blocked address, checksum mismatch, quota, unknown ID)
"""

from __future__ import annotations


class FetchError(Exception):
    """A try that did not deliver; str(e) is a sentence a user can act on."""


class TransientError(FetchError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(FetchError):
    pass


class Cancelled(Exception):
    """The task was cancelled while it ran (its trigger was deleted or the API said so)."""
