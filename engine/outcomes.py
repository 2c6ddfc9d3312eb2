"""The closed set of ways a transfer can end short of success, after aria2's exit codes
(`src/error_code.h`): each outcome says what happens next (its `Disposition`) and what the
user is told (its text, a template filled with the details of the case).

Local faults (the server's own disk) are outcomes of their own, apart from the network's:
a full disk is never reported, retried or counted as a dropped connection.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class Disposition(IntEnum):
    """What a failed try leads to. When several segments fail at once, the highest decides."""

    RETRY = 1  # a network fault: back off and resume; counts towards engine.retry.give_up_after
    RESTART = 2  # the saved bytes cannot be continued: start again from zero at once
    WAIT_FOR_DISK = 3  # the server's disk: wait for it without spending the give-up time
    FAIL = 4  # no retry can help: the task fails and its trigger gets an `.error.txt`
    STOP = 5  # cancelled: nothing to report


class Outcome(Enum):
    """One way a try ended; `text` takes the fields named in its braces."""

    def __new__(cls, disposition: Disposition, text: str) -> Outcome:
        member = object.__new__(cls)
        member._value_ = len(cls.__members__) + 1  # several outcomes share a text; each is its own member
        member.disposition = disposition
        member.text = text
        return member

    # network and origin faults, retried
    NETWORK_DROP = (Disposition.RETRY, "connection to {host} dropped: {detail}")
    TIMEOUT = (Disposition.RETRY, "{host} did not answer in time")
    NAME_NOT_RESOLVED = (Disposition.RETRY, "cannot resolve {host} (DNS)")
    CONNECTION_REFUSED = (Disposition.RETRY, "cannot connect to {host}: connection refused")
    CONNECTION_FAILED = (Disposition.RETRY, "cannot connect to {host}: {detail}")
    ORIGIN_UNAVAILABLE = (Disposition.RETRY, "{host} answered HTTP {status} {reason}")
    PEER_ERROR = (Disposition.RETRY, "BitTorrent error: {detail}")
    # the content on the origin is not the one whose bytes are saved
    CONTENT_CHANGED = (Disposition.RESTART, "the content changed on the origin; starting again from the beginning")
    # the server's own disk
    DISK_FULL = (Disposition.WAIT_FOR_DISK, "the server's disk is full; the download waits for space")
    DISK_ALMOST_FULL = (Disposition.WAIT_FOR_DISK,
                        "the server's disk is almost full (storage.min_free); waiting for space")
    DISK_QUOTA = (Disposition.WAIT_FOR_DISK, "the server's disk quota is used up; the download waits for space")
    DISK_READ_ONLY = (Disposition.WAIT_FOR_DISK,
                      "the server's storage is read-only; the download waits until it can write again")
    DISK_IO = (Disposition.WAIT_FOR_DISK,
               "the server's disk reported an I/O error; the download waits until it can write again")
    DISK_ERROR = (Disposition.WAIT_FOR_DISK,
                  "the server could not write the download's temporary file ({detail}); "
                  "the download waits until it can write again")
    # permanent: the origin's or the user's answer will not change by retrying
    LOGIN_REFUSED = (Disposition.FAIL,
                     "{host} refused the login (HTTP {status}): check the user:password in the link, the trigger's "
                     "header= lines, and the entries for {host} in .fetchdrive/netrc and .fetchdrive/cookies.txt "
                     "in your space")
    NOT_FOUND = (Disposition.FAIL, "{host} answered HTTP {status} {reason} for {url}")
    GONE = (Disposition.FAIL, "{host} answered HTTP {status} {reason} for {url}; the content was removed")
    HTTP_REFUSED = (Disposition.FAIL, "{host} answered HTTP {status} {reason} for {url}")
    TOO_MANY_REDIRECTS = (Disposition.FAIL, "too many redirects starting at {url}")
    ADDRESS_REFUSED = (Disposition.FAIL, "{detail}")
    BAD_URL = (Disposition.FAIL, "{url} is not a URL that can be fetched ({detail})")
    CHECKSUM_MISMATCH = (Disposition.FAIL,
                         "checksum mismatch: expected sha256 {expected}, got {got}; the file was not saved")
    QUOTA = (Disposition.FAIL, "not enough space: {detail}; delete some files first")
    UNSUPPORTED = (Disposition.FAIL, "{detail}")
    SOURCE_REFUSED = (Disposition.FAIL, "{detail}")
    # the user or the API stopped it
    CANCELLED = (Disposition.STOP, "the download was cancelled")

    def describe(self, **fields: object) -> str:
        """The sentence for the user, with this case's details."""
        return self.text.format(**fields)


def status_outcome(status: int, *, sent_login: bool) -> Outcome | None:
    """The outcome of an HTTP status that ends a try, None for one that carries content."""
    if status in (408, 429) or status >= 500:
        return Outcome.ORIGIN_UNAVAILABLE
    if status in (401, 403) and sent_login:
        return Outcome.LOGIN_REFUSED
    if status in (200, 206):
        return None
    return {404: Outcome.NOT_FOUND, 410: Outcome.GONE}.get(status, Outcome.HTTP_REFUSED)
