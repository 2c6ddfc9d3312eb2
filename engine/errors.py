"""The engine's outcomes of a failed try, decided in one place.

    FetchError
     +-- TransientError     retried with back-off (refused/reset connections, time-outs,
     |                       DNS failures, HTTP 408, 429, 5xx); may carry Retry-After
     +-- PermanentError     the task fails and the trigger gets an `.error.txt`
     |                       (HTTP 4xx, blocked address, checksum mismatch, quota, unknown ID)
     +-- LocalStorageError  the server's own disk failed a write (full, over a filesystem
                             quota, read-only, I/O error): not the origin's fault nor the
                             user's, so the task waits for it without spending the time it is
                             given to get past network faults (engine.retry.give_up_after)
"""

from __future__ import annotations

import errno


class FetchError(Exception):
    """A try that did not deliver; str(e) is a sentence a user can act on."""


class TransientError(FetchError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentError(FetchError):
    pass


class LocalStorageError(FetchError):
    pass


# errno values only a local file can give (a socket never does), with what the user is told
_LOCAL_ERRNOS = {
    errno.ENOSPC: "the server's disk is full; the download waits for space",
    errno.EDQUOT: "the server's disk quota is used up; the download waits for space",
    errno.EROFS: "the server's storage is read-only; the download waits until it can write again",
    errno.EIO: "the server's disk reported an I/O error; the download waits until it can write again",
}


def local_storage_error(error: BaseException) -> LocalStorageError | None:
    """The LocalStorageError that `error` stands for, if it is a fault of the server's own disk."""
    if isinstance(error, LocalStorageError):
        return error
    if isinstance(error, OSError) and error.errno in _LOCAL_ERRNOS:
        return LocalStorageError(_LOCAL_ERRNOS[error.errno])
    return None


class Cancelled(Exception):
    """The task was cancelled while it ran (its trigger was deleted or the API said so)."""
