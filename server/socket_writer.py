"""A response writer for cheroot that sends large blocks without copying them.

cheroot's `StreamWriter` is `_pyio`'s BufferedWriter: every write is copied into a bytearray,
copied again into a `bytes` for each send, and what a partial send leaves is shifted to the
front, so a 1 MiB block of a large GET is copied several times over. `DirectWriter` keeps
that path for small writes (status line, headers) and sends a large block straight from the
caller's bytes when nothing is buffered ahead of it, so the order on the wire is unchanged.
"""

from __future__ import annotations

from cheroot.makefile import StreamWriter

DIRECT_MIN = 64 * 1024


class DirectWriter(StreamWriter):
    def write(self, data: bytes) -> int:
        if len(data) < DIRECT_MIN:
            return super().write(data)
        view = memoryview(data)
        with self._write_lock:
            self._flush_unlocked()  # anything buffered goes first
            while view:
                # cheroot's sockets have a timeout: send blocks until it can send something
                view = view[self.raw.write(view) or 0:]
        self.bytes_written += len(data)
        return len(data)
