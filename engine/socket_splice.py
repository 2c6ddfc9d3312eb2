"""Moving bytes from a socket into a file inside the kernel: Linux splice(2) takes them from
the socket into a pipe and from the pipe into the file, so they never pass through Python.

Used for PUT bodies (provider/body_splice.py) and for download bodies (engine/body_copy.py),
where it works: Linux, a filesystem that accepts splice writes
(`splice_supported`, checked once per folder) and a plain-HTTP socket (a TLS socket carries
ciphertext). On a gigabyte this saves a copy into Python and one out of it. `write_all` is
how everything else writes into files, in the same small pieces (WRITE_PIECE).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Callable

SPLICE_BLOCK = 1024 * 1024
# Each write into a file goes in pieces of at most this size. The kernel caches a write in
# page-cache folios as large as the write; on the project's VM, once a gigabyte had been
# written and freed, large folios became slow to come by: a 1 GiB download took 1.6-2.2 s in
# 1 MiB writes and 0.75-0.82 s in 64 KiB ones (curl writes 16 KiB at a time).
WRITE_PIECE = 64 * 1024


class FileWriteError(OSError):
    """The file refused the bytes (not the socket): whatever its errno, a local fault."""


def splice_supported(folder: Path) -> bool:
    """Whether splice can write into files in `folder` (not every filesystem can)."""
    if not hasattr(os, "splice"):
        return False
    read_end, write_end = os.pipe()
    fd, name = tempfile.mkstemp(dir=folder, prefix="splice-check-")
    # Unlinked at once. A node starting beside this one on the same storage root removes
    # strays from the folder, and may have taken this file already (that crashed the start).
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
    try:
        os.write(write_end, b"x")
        return os.splice(read_end, fd, 1) == 1
    except OSError:
        return False
    finally:
        for open_fd in (read_end, write_end, fd):
            os.close(open_fd)


def splice_to_file(
    socket_fd: int,
    fd: int,
    count: int,
    *,
    timeout: float,
    offset: int | None = None,
    after_block: Callable[[int], None] = lambda moved: None,
    write_lock: AbstractContextManager[object] = contextlib.nullcontext(),
) -> int:
    """Move up to `count` bytes from `socket_fd` into the file `fd`, at `offset` if given,
    else at the file's position; the bytes moved (fewer if the peer closed the connection).

    `after_block(n)` runs each time n more bytes are in the file; it may raise to stop.
    `write_lock` is held while a block goes from the pipe into the file.
    TimeoutError if nothing arrives for `timeout` seconds; FileWriteError if the file fails.
    """
    moved = 0
    read_end, write_end = os.pipe()
    try:
        with contextlib.suppress(OSError):  # a smaller pipe only means more rounds
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, SPLICE_BLOCK)
        readable = select.poll()
        readable.register(socket_fd, select.POLLIN)
        while moved < count:
            try:
                # a socket with a timeout is non-blocking underneath
                block = os.splice(socket_fd, write_end, min(count - moved, SPLICE_BLOCK))
            except BlockingIOError:
                if not readable.poll(timeout * 1000):
                    raise TimeoutError(f"nothing arrived for {timeout:g} s") from None
                continue
            if block == 0:
                break
            landed = 0
            with write_lock:
                while landed < block:
                    at = None if offset is None else offset + moved + landed
                    try:
                        landed += os.splice(read_end, fd, min(block - landed, WRITE_PIECE), offset_dst=at)
                    except OSError as error:
                        raise FileWriteError(error.errno, error.strerror) from None
            moved += block
            after_block(block)
    finally:
        os.close(read_end)
        os.close(write_end)
    return moved


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """Write all of `data` to `fd` (at `offset` if given) in pieces of at most WRITE_PIECE."""
    view = memoryview(data)
    while view:
        piece = view[:WRITE_PIECE]
        written = os.write(fd, piece) if offset is None else os.pwrite(fd, piece, offset)
        view = view[written:]
        if offset is not None:
            offset += written
