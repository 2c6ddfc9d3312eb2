"""The one loop that copies an HTTP response body into a file, shared by every resume path:
the single stream (engine/fetcher.py), each segment and the probe (engine/segments.py), and the
sync client (server/client.py). engine/ranged_get.py decides whether a body continues the saved
bytes; this module writes it after them.

The body goes at an offset into a file the caller holds open, by splice(2) from the socket where
that can work (engine/socket_splice.py), else through Python a CHUNK at a time. Each chunk is
counted by the caller's `landed` and reported to the TransferContext (throttle, cancel). A body
read to its end (no `count`) is decoded from any content coding and each read stays within the
room the context holds, so a body of unknown length stops at the quota; a `count` of bytes is a
range whose room was claimed before, taken as it is on the wire. What goes wrong is classified
once (engine/errors.py): the file's faults are LocalStorageError, the network's are Dropped, so
the caller resumes from the bytes saved.
"""

from __future__ import annotations

import socket
from contextlib import AbstractContextManager, nullcontext
from typing import Callable

import requests

from engine.errors import Dropped, classify, failure, on_local_disk
from engine.outcomes import Disposition, Outcome
from engine.socket_splice import splice_to_file, write_all
from engine.transfer_context import CHUNK, TransferContext


def copy_body(response: requests.Response, out: int, offset: int, context: TransferContext,
              landed: Callable[[int], None], *, count: int | None = None, splice: bool = False,
              write_lock: AbstractContextManager[object] = nullcontext()) -> int:
    """Copy `count` bytes of `response`'s body (None: all the rest) into the open file `out` at
    `offset`, calling `landed(n)` and then `context.landed(n)` as each n bytes are in the file;
    the bytes copied. `splice`: the file takes splice(2) writes. `write_lock` is held while
    bytes go into the file (segments share one). With a `count`, a body that ends short of it
    raises Dropped; without one, a body that goes on past the room held fails with the quota."""

    def done(moved: int) -> None:
        landed(moved)
        context.landed(moved)

    with context.interrupting(lambda: _cut(response)):
        try:
            copied = _copy(response, out, offset, context, done, count, splice, write_lock)
        except Exception:
            context.stop_if_cancelled()  # a read cut by the cancel fails: that is the cancel, not a fault
            raise
        context.stop_if_cancelled()  # a cut read may also look like the body's end
    if count is not None and copied < count:
        raise Dropped(f"body ended after {copied} of {count} bytes")
    return copied


def _copy(response: requests.Response, out: int, offset: int, context: TransferContext,
          done: Callable[[int], None], count: int | None, splice: bool,
          write_lock: AbstractContextManager[object]) -> int:
    copied = _splice_body(response, out, offset, count, done, write_lock) if splice else None
    if copied is not None:
        return copied
    copied = 0
    while count is None or copied < count:
        # Read to the end: within the room held; with none left, one byte more says whether the body goes on.
        allowed = context.room_for_next_read(offset + copied) if count is None else min(CHUNK, count - copied)
        chunk = read(response, allowed or 1, decode_content=count is None)
        if not chunk:
            break
        if not allowed:
            raise failure(Outcome.QUOTA, detail=f"{offset + copied} bytes saved and the quota has no room for more")
        with write_lock, on_local_disk():
            write_all(out, chunk, offset + copied)
        copied += len(chunk)
        done(len(chunk))
    return copied


def _cut(response: requests.Response) -> None:
    """End the connection under `response` for both sides, so that a read blocked on it returns
    at once (from another thread: the plain socket's shutdown, never TLS's, which is not safe
    while the reader is inside it)."""
    sock = getattr(response.raw.connection, "sock", None)
    if sock is not None:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def cut_short(error: Exception, url: str) -> Exception:
    """What a body that failed with `error` raises: Dropped, to resume from the bytes saved,
    for a fault of the network; the fault itself for anything else (the local disk)."""
    found = classify(error, url)
    if found is None:
        return error
    if found.outcome.disposition is Disposition.RETRY:
        return Dropped(type(error).__name__, found.outcome)
    return found


def read(response: requests.Response, count: int, *, decode_content: bool = False) -> bytes:
    """Up to `count` bytes of the body; a body cut short raises Dropped with its outcome
    (a time-out or a drop), so that the bytes saved are resumed from."""
    try:
        return response.raw.read1(count, decode_content=decode_content)
    except Exception as error:
        raise cut_short(error, response.url) from None


def _splice_body(response: requests.Response, fd: int, offset: int, count: int | None,
                 landed: Callable[[int], None], write_lock: AbstractContextManager[object]) -> int | None:
    """Move up to `count` bytes of the body (None: all of it) into `fd` at `offset` inside the
    kernel, calling `landed(n)` as they arrive; the bytes moved, or None, having read nothing,
    where that cannot work: TLS, a content coding, a body of unknown length, a socket without
    a time-out (urllib3 gives it the read time-out, which splice_to_file polls with)."""
    wire = getattr(response.raw, "_fp", None)  # http.client's response, under urllib3's
    buffered = getattr(wire, "fp", None)
    sock = getattr(response.raw.connection, "sock", None)
    if type(sock) is not socket.socket or buffered is None or sock.gettimeout() is None or (
        getattr(wire, "length", None) is None
        or response.headers.get("Content-Encoding", "identity").lower() != "identity"
    ):
        return None
    count = wire.length if count is None else min(count, wire.length)
    moved = 0
    try:
        # What came along with the headers sits in http.client's small buffer: one read1 empties it.
        if count > 0 and (first := buffered.read1(min(CHUNK, count))):
            with write_lock, on_local_disk():
                write_all(fd, first, offset)
            moved = len(first)
            landed(moved)
        moved += splice_to_file(sock.fileno(), fd, count - moved, timeout=sock.gettimeout(), offset=offset + moved,
                                after_block=landed, write_lock=write_lock)
    except OSError as error:
        raise cut_short(error, response.url) from None
    return moved
