"""The engine's failed tries, each carrying its `Outcome` (engine/outcomes.py), and `classify`,
the one place that decides which outcome an exception stands for.

    FetchError              str(e) is a sentence a user can act on; e.outcome says what it is
     +-- TransientError     retried with back-off (refused/reset connections, time-outs,
     |    |                  DNS failures, HTTP 408, 429, 5xx); may carry Retry-After
     |    +-- Dropped       a body that ended early: resumed at once where the bytes end
     +-- Restart            the saved bytes cannot be continued: start again from zero
     +-- LocalStorageError  the server's own disk failed a write (full, over a filesystem
     |                       quota, read-only, I/O error): not the origin's fault nor the
     |                       user's, so the task waits for it without spending the time it is
     |                       given to get past network faults (engine.retry.give_up_after)
     +-- PermanentError     the task fails and the trigger gets an `.error.txt`
     |                       (HTTP 4xx, blocked address, checksum mismatch, quota, unknown ID)
     +-- Cancelled          the task was cancelled while it ran
"""

from __future__ import annotations

import errno
import http.client
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import requests
import urllib3

from engine.addresses import BlockedAddressError
from engine.outcomes import Disposition, Outcome
from engine.socket_splice import FileWriteError


class FetchError(Exception):
    """A try that did not deliver; str(e) is a sentence a user can act on."""

    def __init__(self, message: str, outcome: Outcome, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.retry_after = retry_after


class TransientError(FetchError):
    pass


class Dropped(TransientError):
    """The body ended early (`outcome`: dropped, or timed out); resume from what was saved."""

    def __init__(self, detail: str, outcome: Outcome = Outcome.NETWORK_DROP) -> None:
        super().__init__(detail, outcome)


class Restart(FetchError):
    """The saved bytes cannot be continued (the content changed, or the origin stopped
    honouring ranges); start again from zero."""

    def __init__(self) -> None:
        super().__init__(Outcome.CONTENT_CHANGED.describe(), Outcome.CONTENT_CHANGED)


class PermanentError(FetchError):
    def __init__(self, message: str, outcome: Outcome = Outcome.SOURCE_REFUSED) -> None:
        super().__init__(message, outcome)


class LocalStorageError(FetchError):
    pass


class Cancelled(FetchError):
    """The task was cancelled while it ran (its trigger was deleted or the API said so)."""

    def __init__(self) -> None:
        super().__init__(Outcome.CANCELLED.describe(), Outcome.CANCELLED)


def failure(outcome: Outcome, *, retry_after: float | None = None, **fields: object) -> FetchError:
    """The error for `outcome`, its text filled with `fields`."""
    if outcome is Outcome.CANCELLED:
        return Cancelled()
    if outcome is Outcome.CONTENT_CHANGED:
        return Restart()
    message = outcome.describe(**fields)
    if outcome.disposition is Disposition.FAIL:
        return PermanentError(message, outcome)
    if outcome.disposition is Disposition.WAIT_FOR_DISK:
        return LocalStorageError(message, outcome)
    return TransientError(message, outcome, retry_after)


# errno values only a local file can give (a socket never does)
_DISK_ERRNOS = {
    errno.ENOSPC: Outcome.DISK_FULL,
    errno.EDQUOT: Outcome.DISK_QUOTA,
    errno.EROFS: Outcome.DISK_READ_ONLY,
    errno.EIO: Outcome.DISK_IO,
}


def host_of(url: str) -> str:
    return requests.utils.urlparse(url).hostname or url


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception inside it: causes, contexts, arguments, urllib3's `reason`."""
    seen: set[int] = set()
    pending: list[object] = [error]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__, *current.args, getattr(current, "reason", None)]


def classify(error: BaseException, url: str = "") -> FetchError | None:
    """The FetchError that `error`, raised while fetching `url`, stands for; None if it is no
    fault of a transfer (a bug). A fault of the local disk is never taken for a network one."""
    if isinstance(error, FetchError):
        return error
    causes = list(_causes(error))
    for cause in causes:
        if isinstance(cause, FileWriteError) or isinstance(cause, OSError) and cause.errno in _DISK_ERRNOS:
            return disk_failure(cause)
        if isinstance(cause, BlockedAddressError):
            return failure(Outcome.ADDRESS_REFUSED, detail=str(cause))
    host = host_of(url)
    if isinstance(error, requests.exceptions.TooManyRedirects):
        return failure(Outcome.TOO_MANY_REDIRECTS, url=url)
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                          requests.exceptions.MissingSchema)):
        return failure(Outcome.BAD_URL, url=url, detail=str(error))
    if any(isinstance(cause, (socket.gaierror, urllib3.exceptions.NameResolutionError)) for cause in causes):
        return failure(Outcome.NAME_NOT_RESOLVED, host=host)
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return failure(Outcome.CONNECTION_REFUSED, host=host)
    # urllib3's NewConnectionError is a TimeoutError only for backwards compatibility
    if any(isinstance(cause, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError))
           and not isinstance(cause, urllib3.exceptions.NewConnectionError) for cause in causes):
        return failure(Outcome.TIMEOUT, host=host)
    if isinstance(error, requests.exceptions.RequestException):
        return failure(Outcome.CONNECTION_FAILED, host=host, detail=type(error).__name__)
    if isinstance(error, (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError)):
        return failure(Outcome.NETWORK_DROP, host=host, detail=type(error).__name__)
    return None


def disk_failure(error: OSError) -> LocalStorageError:
    """What an OSError of the server's own file stands for, whatever its errno."""
    outcome = _DISK_ERRNOS.get(error.errno, Outcome.DISK_ERROR)
    return failure(outcome, detail=error.strerror or type(error).__name__)  # never the path: it is the server's


@contextmanager
def on_local_disk() -> Iterator[None]:
    """Any OSError inside is the server's own file failing, never the network."""
    try:
        yield
    except OSError as error:
        raise disk_failure(error) from None


def local_storage_error(error: BaseException) -> LocalStorageError | None:
    """The LocalStorageError that `error` stands for, if it is a fault of the server's own disk."""
    found = classify(error)
    return found if isinstance(found, LocalStorageError) else None


def most_telling(failures: list[FetchError]) -> FetchError | None:
    """Of failures that happened together (the segments of one transfer), the one that decides
    what happens next: the highest disposition (a cancel over a permanent error over a fault of
    the local disk over a restart over a network fault), among network faults the longest
    Retry-After."""
    return max(failures, key=lambda failure: (failure.outcome.disposition, failure.retry_after or 0), default=None)
