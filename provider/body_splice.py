"""Receiving a PUT body without copying it through Python (engine/socket_splice.py).

cheroot reads request bodies with `_pyio`'s pure-Python BufferedReader, which allocates,
zero-fills and joins a fresh buffer for every recv; on a 1 GiB PUT that was half the time.
Splicing is used only where it works: Linux, a filesystem that accepts splice writes
(`splice_supported`), plain HTTP (a TLS socket carries ciphertext), and a body of known
length read by cheroot. Everything else takes the stream WsgiDAV hands over.
"""

from __future__ import annotations

from cheroot.makefile import StreamReader
from cheroot.server import KnownLengthRFile

from engine.socket_splice import splice_to_file, write_all


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

    def landed(count: int) -> None:
        body.remaining -= count

    try:
        return moved + splice_to_file(reader.raw.fileno(), fd, body.remaining, timeout=timeout, after_block=landed)
    except TimeoutError:
        raise TimeoutError(f"the client sent nothing for {timeout:g} s") from None
