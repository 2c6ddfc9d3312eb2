"""Serialises changes to the same file, and to anything below a folder that is moved, deleted
or copied onto, on every node sharing the storage root.

Replacing, deleting, copying onto and moving a file each read the size of what they replace
and then change it; with two clients racing on one path, the size read must be the size
changed, or quota drifts. A path string names another file once a folder above it has moved
(issue 13: the engine's note for downloads/f/x could read the size of one file and rename over
another, as a client moved downloads/f away and back in between), so a change locks
its own path exclusively and every folder above it in the space shared: changes below one
folder run side by side, and a MOVE or DELETE of the folder (which locks the folder itself
exclusively) waits for them and they for it. All of a change's locks are taken in one call,
so in the one global order that keeps two callers from deadlocking.

The locks are engine/cluster_locks.py's (stripes and `flock` on the embedded database,
advisory locks on PostgreSQL), so two nodes changing one path take turns as two threads of
one process do. Keys are paths relative to the spaces' root, so nodes that mount the storage
root at different places agree. They are reentrant: a caller that holds paths while it
decides (the engine reading a trigger before removing it) may then have the space writer
change them, and only them. Path locks come before the user's quota lock (provider/quota.py
`booking`).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

from engine.cluster_locks import ClusterLocks


class PathLocks:
    """The path locks of all spaces, the folders under `spaces_root`."""

    def __init__(self, locks: ClusterLocks, spaces_root: Path) -> None:
        self._locks = locks
        self._prefix = os.path.realpath(spaces_root) + os.sep

    def locked_paths(self, *paths: str) -> AbstractContextManager[None]:
        """Hold all `paths` exclusively and the folders above them in their spaces shared."""
        keys = [self._key(path) for path in paths]
        return self._locks.locked(*keys, shared=[folder for key in keys for folder in _folders_above(key)])

    def _key(self, path: str) -> str:
        if not path.startswith(self._prefix):
            raise ValueError(f"{path} is not in a space under {self._prefix}")
        return path[len(self._prefix):]


def _folders_above(key: str) -> list[str]:
    """The folders holding `key` ("user/a/b/file": "user/a", "user/a/b"); the space itself is
    never moved or deleted."""
    parts = key.split(os.sep)
    return [os.sep.join(parts[:end]) for end in range(2, len(parts))]


def size_or_zero(path: str) -> int:
    """Bytes of the file at `path`, 0 when there is none."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
