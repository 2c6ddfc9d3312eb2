"""Atomic PUT bodies: written to a temporary file, checked, then renamed over the target.

An interrupted or refused upload never touches the previous content. WsgiDAV 4.4 reports a
body that ended early as success, so the byte count is compared with Content-Length (or
Finder's X-Expected-Entity-Length on chunked PUTs) here. The body's room in the quota is
reserved before it is written (provider/quota.py): the declared length up front, a body of
unknown length a step ahead of what has arrived, so it stops with 507 at the quota. The
previous content stays until the rename, so a replacement needs room for its whole length.
Where it can, the body goes from the socket to the file without passing through Python
(`body_splice`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from wsgidav.dav_error import HTTP_BAD_REQUEST, DAVError

from engine.socket_splice import write_all
from provider.body_splice import splice_body, spliceable_body
from provider.quota import QuotaExceeded, Reservation

_RESERVE_AHEAD = 4 * 1024 * 1024


def declared_length(environ: dict) -> int | None:
    """The body length the client announced, if any."""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    for key in (() if chunked else ("CONTENT_LENGTH",)) + ("HTTP_X_EXPECTED_ENTITY_LENGTH",):
        value = environ.get(key)
        if value not in (None, ""):
            try:
                length = int(value)
            except ValueError:
                raise DAVError(HTTP_BAD_REQUEST, f"{key} is not a number: {value!r}") from None
            if length < 0:
                raise DAVError(HTTP_BAD_REQUEST, f"{key} is negative: {value!r}")
            return length
    return None


Place = Callable[[Path, Path, Reservation, int], tuple[os.stat_result, bool]]


class AtomicUpload:
    """File-like sink for one PUT; `commit()` has it renamed into place."""

    def __init__(self, *, target: Path, temp_dir: Path, reservation: Reservation, place: Place, environ: dict,
                 splice_timeout: float | None = None) -> None:
        """`reservation`: an empty one in the user's quota; `place`: the space writer's
        `put_in_place`; `splice_timeout`: how long a spliced body may stall, None where
        splicing cannot work."""
        self.target = target
        self._environ = environ
        self._splice_timeout = splice_timeout
        self._place = place
        self.expected = declared_length(environ)
        self._reservation = reservation
        reservation.require(self.expected or 0)
        try:
            temp_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=temp_dir, prefix="put-", suffix=".tmp")
        except BaseException:
            self._reservation.release()
            raise
        self._temp = Path(name)
        self._fd: int | None = fd
        self.received = 0

    def write(self, data: bytes) -> None:
        assert self._fd is not None
        arrived = self.received + len(data)
        if self.expected is not None and arrived > self.expected:
            raise DAVError(HTTP_BAD_REQUEST, f"body is longer than the declared {self.expected} bytes")
        self._reservation.require(arrived, ahead=_RESERVE_AHEAD)
        write_all(self._fd, data)
        self.received = arrived

    def writelines(self, chunks: Iterable[bytes]) -> None:
        """WsgiDAV hands over the body as a stream of blocks read from `wsgi.input`."""
        body = spliceable_body(self._environ) if self._splice_timeout is not None else None
        if body is None:
            try:
                for chunk in chunks:
                    self.write(chunk)
            except (ValueError, ConnectionError) as error:  # cheroot: a chunked body cut short or malformed
                raise DAVError(HTTP_BAD_REQUEST, f"the body was cut short or malformed ({error}); "
                                                 "the file was left unchanged") from None
            return
        assert self._fd is not None and self._splice_timeout is not None
        try:
            self.received += splice_body(body, self._fd, self._splice_timeout)
        except TimeoutError as error:
            raise DAVError(HTTP_BAD_REQUEST, f"{error}; the file was left unchanged") from None
        self._environ["wsgidav.all_input_read"] = 1

    def close(self) -> None:
        """Finish the body; raise if it is shorter than declared (the client went away)."""
        self._close_file()
        if self.expected is not None and self.received != self.expected:
            raise DAVError(
                HTTP_BAD_REQUEST,
                f"body ended after {self.received} of {self.expected} bytes; the file was left unchanged",
            )

    def commit(self) -> os.stat_result:
        """Rename into place and book the size change; the new file's stat as of the rename."""
        return self._place(self._temp, self.target, self._reservation, self.received)[0]

    def _close_file(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        self._close_file()
        self._reservation.release()
        try:
            self._temp.unlink()
        except FileNotFoundError:
            pass


__all__ = ["AtomicUpload", "QuotaExceeded", "declared_length"]
