"""Receiving a PUT body without copying it through Python: Linux splice(2) moves it from the
socket into a pipe and from the pipe into the file, inside the kernel.

cheroot reads request bodies with `_pyio`'s pure-Python BufferedReader, which allocates,
zero-fills and joins a fresh buffer for every recv; on a 1 GiB PUT that was half the time.
Splicing is used only where it works: Linux, a filesystem that accepts splice writes
(checked once, `splice_supported`), plain HTTP (a TLS socket carries ciphertext), and a body
of known length read by cheroot. Everything else takes the stream WsgiDAV hands over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import tempfile
from pathlib import Path

from cheroot.makefile import StreamReader
from cheroot.server import KnownLengthRFile

SPLICE_BLOCK = 1024 * 1024


def splice_supported(folder: Path) -> bool:
    """Whether splice can write into files in `folder` (not every filesystem can)."""
    if not hasattr(os, "splice"):
        return False
    read_end, write_end = os.pipe()
    fd, name = tempfile.mkstemp(dir=folder, prefix="splice-check-")
    try:
        os.write(write_end, b"x")
        return os.splice(read_end, fd, 1) == 1
    except OSError:
        return False
    finally:
        for open_fd in (read_end, write_end, fd):
            os.close(open_fd)
        os.unlink(name)


def spliceable_body(environ: dict) -> KnownLengthRFile | None:
    """The request body, if it can be spliced: plain HTTP, known length, cheroot's reader."""
    body = environ.get("wsgi.input")
    if environ.get("wsgi.url_scheme") != "http" or not isinstance(body, KnownLengthRFile):
        return None
    return body if isinstance(body.rfile, StreamReader) else None


def splice_body(body: KnownLengthRFile, fd: int, timeout: float) -> int:
    """Move the rest of `body` to the end of the file `fd`; the bytes moved (fewer than
    declared if the client went away). TimeoutError if the client sends nothing for `timeout` s."""
    moved = 0
    reader = body.rfile
    while body.remaining > 0 and reader.has_data():  # the part read along with the headers
        data = reader.read1(body.remaining)
        write_all(fd, data)
        body.remaining -= len(data)
        moved += len(data)
    socket_fd = reader.raw.fileno()
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a smaller pipe only means more rounds
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, SPLICE_BLOCK)
        readable = select.poll()
        readable.register(socket_fd, select.POLLIN)
        while body.remaining > 0:
            try:
                # cheroot's sockets are non-blocking underneath (they have a timeout)
                count = os.splice(socket_fd, write_end, min(body.remaining, SPLICE_BLOCK))
            except BlockingIOError:
                if not readable.poll(timeout * 1000):
                    raise TimeoutError(f"the client sent nothing for {timeout:g} s") from None
                continue
            if count == 0:
                break
            body.remaining -= count
            moved += count
            while count:
                count -= os.splice(read_end, fd, count)
    finally:
        os.close(read_end)
        os.close(write_end)
    return moved


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
