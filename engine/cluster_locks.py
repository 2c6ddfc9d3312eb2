"""Mutual exclusion that holds across every node sharing one database and storage root.

`locked(*keys)` holds all `keys` at once, taken in one global order so that two callers
cannot deadlock, and re-entrant: a thread that holds a key may take it again (the engine
holds a trigger's path while the space writer changes it). Keys live in a namespace (one
`ClusterLocks` object each: paths, users, DAV locks); a caller may take keys of a later
namespace while it holds keys of an earlier one, never the reverse, which keeps nested
namespaces free of deadlocks even where two keys share a stripe.

- The embedded database: a fixed set of stripes per namespace. Threads of one process
  exclude each other with a re-entrant lock per stripe; processes sharing the storage root
  (the CLI beside the server, or several servers on one machine) with `flock` on one small
  file per stripe under `storage.root/locks/`, held while the thread holds the stripe.
- PostgreSQL: session advisory locks, `pg_advisory_lock(hashtextextended(key, 0))`, on a
  connection of the calling thread's own (advisory locks belong to a session, so a pool
  shared between threads would hand one thread's lock to another).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Protocol

from engine.database import Database

if TYPE_CHECKING:
    import psycopg


class ClusterLocks(Protocol):
    def locked(self, *keys: str) -> AbstractContextManager[None]:
        """Hold every one of `keys` on every node for the `with` block."""


def _stable_hash(key: str) -> int:
    # Python's hash() of a str differs between processes; every node must agree.
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class StripedFileLocks:
    """Stripes: a re-entrant lock for the threads of this process, `flock` for the others."""

    def __init__(self, folder: Path, stripes: int) -> None:
        self._folder = folder
        self._folder.mkdir(parents=True, exist_ok=True)
        self._locks = tuple(threading.RLock() for _ in range(stripes))
        # Per stripe: how deep its holder has nested, and the open lock file while held.
        self._depth = [0] * stripes
        self._files: list[int | None] = [None] * stripes

    @contextmanager
    def locked(self, *keys: str) -> Iterator[None]:
        stripes = sorted({_stable_hash(key) % len(self._locks) for key in keys})
        taken: list[int] = []
        try:
            for index in stripes:
                self._take(index)
                taken.append(index)
            yield
        finally:
            for index in reversed(taken):
                self._give(index)

    def _take(self, index: int) -> None:
        self._locks[index].acquire()
        try:
            if self._depth[index] == 0:
                fd = os.open(self._folder / str(index), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._files[index] = fd
            self._depth[index] += 1
        except BaseException:
            self._locks[index].release()
            raise

    def _give(self, index: int) -> None:
        self._depth[index] -= 1
        if self._depth[index] == 0:
            fd, self._files[index] = self._files[index], None
            if fd is not None:
                os.close(fd)  # closing the only descriptor of the file releases its flock
        self._locks[index].release()


class AdvisoryLocks:
    """PostgreSQL session advisory locks, on one connection per thread and database (shared
    by every namespace, so a node opens no more than one per thread)."""

    _threads: dict[str, threading.local] = {}
    _threads_lock = threading.Lock()

    def __init__(self, url: str, namespace: str) -> None:
        self._url = url
        self._namespace = namespace
        with self._threads_lock:
            self._local = self._threads.setdefault(url, threading.local())

    def _session(self) -> tuple[psycopg.Connection, dict[str, int]]:
        """This thread's connection and how deep it holds each key."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg  # by PostgreSQL drives only: a fifth of the CPU time of every start went to it

            conn = self._local.conn = psycopg.connect(self._url, autocommit=True)
            self._local.held = {}  # a closed session held nothing
        return conn, self._local.held

    @contextmanager
    def locked(self, *keys: str) -> Iterator[None]:
        conn, held = self._session()
        names = sorted({f"{self._namespace}:{key}" for key in keys}, key=_stable_hash)
        taken: list[str] = []
        try:
            for name in names:
                if not held.get(name):
                    conn.execute("select pg_advisory_lock(hashtextextended(%s, 0))", (name,))
                held[name] = held.get(name, 0) + 1
                taken.append(name)
            yield
        finally:
            for name in reversed(taken):
                held[name] -= 1
                if not held[name]:
                    del held[name]
                    conn.execute("select pg_advisory_unlock(hashtextextended(%s, 0))", (name,))


def cluster_locks(database: Database, root: Path, namespace: str, stripes: int = 256) -> ClusterLocks:
    """The locks of `namespace` for the nodes sharing `database` and the storage `root`."""
    if database.dialect == "postgresql":
        return AdvisoryLocks(database.url, namespace)
    return StripedFileLocks(root / "locks" / namespace, stripes)
