"""Serialises changes to the same file within the server process.

Replacing, deleting, copying onto and moving a file each read the size of what they replace
and then change it; with two clients racing on one path, the size read must be the size
changed, or quota drifts. A fixed set of lock stripes keyed by path keeps that exact without
a lock object per file. The stripes are reentrant: a caller that holds a path while it decides
(the engine reading a trigger before removing it) may then have the space writer change it.
"""

from __future__ import annotations

import os
import threading
from contextlib import ExitStack, contextmanager
from typing import Iterator

_STRIPES = tuple(threading.RLock() for _ in range(256))


@contextmanager
def locked_paths(*paths: str) -> Iterator[None]:
    """Hold the stripes of all `paths`, taken in one global order so two callers cannot deadlock."""
    stripes = sorted({hash(path) % len(_STRIPES) for path in paths})
    with ExitStack() as stack:
        for index in stripes:
            stack.enter_context(_STRIPES[index])
        yield


def size_or_zero(path: str) -> int:
    """Bytes of the file at `path`, 0 when there is none."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
