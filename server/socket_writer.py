"""A response writer for cheroot that sends fewer, cheaper packets.

cheroot's `StreamWriter` is `_pyio`'s BufferedWriter, and cheroot sends every write at once:
the head of a response goes out in one send and its body in another, and every block is
copied into a bytearray, copied again into a `bytes` for each send, and what a partial send
leaves is shifted to the front. `DirectWriter` holds small writes while a response is being
written (`holding()`), so a small response leaves in one send, and sends large blocks
straight from the caller's bytes after whatever is held. Order on the wire is unchanged.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from cheroot.makefile import StreamWriter

DIRECT_MIN = 64 * 1024


class DirectWriter(StreamWriter):
    _holding = False

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep small writes until a large one, the end of the block, or DIRECT_MIN bytes."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            if not self.closed:
                self.flush()

    def release(self) -> None:
        """Send what is held and stop holding for the rest of the response (a stream)."""
        self._holding = False
        self.flush()

    def write(self, data: bytes) -> int:
        if len(data) >= DIRECT_MIN:
            return self._send_direct(data)
        if not self._holding:
            return super().write(data)
        with self._write_lock:
            self._write_buf.extend(data)
            if len(self._write_buf) >= DIRECT_MIN:
                self._flush_unlocked()
        self.bytes_written += len(data)
        return len(data)

    def _send_direct(self, data: bytes) -> int:
        view = memoryview(data)
        with self._write_lock:
            self._flush_unlocked()  # what is held goes first
            while view:
                # cheroot's sockets have a timeout: send blocks until it can send something
                view = view[self.raw.write(view) or 0:]
        self.bytes_written += len(data)
        return len(data)
