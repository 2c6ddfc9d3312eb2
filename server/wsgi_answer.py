"""Looking at a WSGI answer's status and headers before passing it on.

WsgiDAV's outer middleware is a generator: it calls `start_response` only once its first
chunk is asked for. `started()` asks for that chunk, so the caller can decide on the status
and headers, and then hand on the whole body with the first chunk put back in front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator


@dataclass
class StartedAnswer:
    status: str
    headers: list[tuple[str, str]]
    _first: bytes
    _rest: Iterator[bytes]
    _answer: Iterable[bytes] = field(repr=False)

    @property
    def code(self) -> int:
        return int(self.status.split(None, 1)[0])

    def header(self, name: str) -> str:
        return next((value for key, value in self.headers if key.lower() == name.lower()), "")

    def body(self) -> Iterable[bytes]:
        """The whole body, closed at the end as WSGI requires."""
        return _Chained(self._first, self._rest, self._answer)

    def read_all(self, limit: int = 64 * 1024) -> bytes:
        chunks, size = [self._first], len(self._first)
        for chunk in self._rest:
            if size >= limit:
                break
            chunks.append(chunk)
            size += len(chunk)
        self.close()
        return b"".join(chunks)

    def close(self) -> None:
        getattr(self._answer, "close", lambda: None)()


class _Chained:
    def __init__(self, first: bytes, rest: Iterator[bytes], answer: Iterable[bytes]) -> None:
        self._first, self._rest, self._answer = first, rest, answer

    def __iter__(self) -> Iterator[bytes]:
        if self._first:
            yield self._first
        yield from self._rest

    def close(self) -> None:
        getattr(self._answer, "close", lambda: None)()


def started(app, environ: dict) -> StartedAnswer:
    """Run `app` until its status and headers are known."""
    captured: list = []

    def capture(status, headers, exc_info=None):
        captured[:] = [status, list(headers)]
        return lambda data: None

    answer = app(environ, capture)
    rest = iter(answer)
    first = next(rest, b"")
    if not captured:
        raise RuntimeError("the WSGI app sent a body without starting its answer")
    return StartedAnswer(captured[0], captured[1], first, rest, answer)
