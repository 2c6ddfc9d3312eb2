"""Serialises changes to the same file, on every node sharing the storage root.

Replacing, deleting, copying onto and moving a file each read the size of what they replace
and then change it; with two clients racing on one path, the size read must be the size
changed, or quota drifts. The locks are engine/cluster_locks.py's (stripes and `flock` on the
embedded database, advisory locks on PostgreSQL), so two nodes changing one path take turns
as two threads of one process do. They are reentrant: a caller that holds a path while it
decides (the engine reading a trigger before removing it) may then have the space writer
change it. Path locks come before the user's quota lock (provider/quota.py `booking`).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager

from engine.cluster_locks import ClusterLocks


class PathLocks:
    """The path locks of all spaces."""

    def __init__(self, locks: ClusterLocks) -> None:
        self._locks = locks

    def locked_paths(self, *paths: str) -> AbstractContextManager[None]:
        """Hold all `paths`, taken in one global order so two callers cannot deadlock."""
        return self._locks.locked(*paths)


def size_or_zero(path: str) -> int:
    """Bytes of the file at `path`, 0 when there is none."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
