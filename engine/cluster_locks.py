"""Mutual exclusion that holds across every node sharing one database and storage root.

`locked(*keys, shared=...)` holds all `keys` exclusively and the `shared` keys in shared mode
(any number of holders at once, none beside an exclusive one) at once, taken in one global
order so that two callers cannot deadlock, and re-entrant: a thread that holds a key may take
it again in the same or the shared mode (the engine holds a trigger's path while the space
writer changes it), never exclusively after shared (two such upgrades would wait for each
other), so a nested `locked` takes a part of what its caller holds. Keys live in a namespace (one
`ClusterLocks` object each: paths, users, DAV locks); a caller may take keys of a later
namespace while it holds keys of an earlier one, never the reverse, which keeps nested
namespaces free of deadlocks even where two keys share a stripe.

- The embedded database: a fixed set of stripes per namespace; a stripe is taken exclusively
  when any of its keys is. Threads of one process share or exclude each other per stripe (a
  thread waiting for it exclusively goes before new sharers, so a folder's MOVE is not starved
  by writes below it); processes sharing the storage root (the CLI beside the server, or
  several servers on one machine) with `flock` (LOCK_SH or LOCK_EX) on one small file per
  stripe under `storage.root/locks/`, held while any thread of the process holds the stripe.
- PostgreSQL: session advisory locks, `pg_advisory_lock(hashtextextended(key, 0))` and its
  `_shared` twin, on a connection of the calling thread's own (advisory locks belong to a
  session, so a pool shared between threads would hand one thread's lock to another); all the
  keys a call takes in one statement, in order, and those it gives back in another, so that
  more keys cost no more round trips.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Protocol

from engine.database import Database

if TYPE_CHECKING:
    import psycopg


class ClusterLocks(Protocol):
    def locked(self, *keys: str, shared: Iterable[str] = ()) -> AbstractContextManager[None]:
        """Hold every one of `keys` exclusively and of `shared` in shared mode (a key in both:
        exclusively) on every node for the `with` block."""


def _stable_hash(key: str) -> int:
    # Python's hash() of a str differs between processes; every node must agree.
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def _modes(keys: Iterable[str], shared: Iterable[str]) -> dict[str, bool]:
    """Each key wanted, and whether exclusively."""
    modes = dict.fromkeys(shared, False)
    modes.update(dict.fromkeys(keys, True))
    return modes


def _refuse_upgrade(key: object) -> None:
    raise RuntimeError(f"{key} is held shared by this thread and cannot be taken exclusively as well")


class _Stripe:
    """One stripe's holders in this process, and the process's `flock` while any hold it."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.depths: dict[int, int] = {}  # holding thread -> how deep it has nested
        self.exclusive = False
        self.exclusive_waiting = 0
        self.taking = False  # a thread is taking the flock for the process
        self.fd: int | None = None


class StripedFileLocks:
    """Stripes: shared or exclusive among the threads of this process, `flock` for the others."""

    def __init__(self, folder: Path, stripes: int) -> None:
        self._folder = folder
        self._folder.mkdir(parents=True, exist_ok=True)
        self._stripes = tuple(_Stripe() for _ in range(stripes))

    @contextmanager
    def locked(self, *keys: str, shared: Iterable[str] = ()) -> Iterator[None]:
        stripes: dict[int, bool] = {}
        for key, exclusive in _modes(keys, shared).items():
            index = _stable_hash(key) % len(self._stripes)
            stripes[index] = stripes.get(index, False) or exclusive
        taken: list[int] = []
        try:
            for index in sorted(stripes):
                self._take(index, stripes[index])
                taken.append(index)
            yield
        finally:
            for index in reversed(taken):
                self._give(index)

    def _take(self, index: int, exclusive: bool) -> None:
        stripe, me = self._stripes[index], threading.get_ident()
        with stripe.changed:
            if me in stripe.depths:
                if exclusive and not stripe.exclusive:
                    _refuse_upgrade(f"stripe {index}")
                stripe.depths[me] += 1
                return
            if exclusive:
                stripe.exclusive_waiting += 1
                try:
                    stripe.changed.wait_for(lambda: not stripe.depths and not stripe.taking)
                finally:
                    stripe.exclusive_waiting -= 1
                    stripe.changed.notify_all()
            else:
                stripe.changed.wait_for(lambda: not stripe.taking and not stripe.exclusive_waiting
                                        and not (stripe.depths and stripe.exclusive))
                if stripe.depths:  # shared by this process already, flock and all
                    stripe.depths[me] = 1
                    return
            stripe.taking = True
        try:
            fd = os.open(self._folder / str(index), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            with stripe.changed:
                stripe.taking = False
                stripe.changed.notify_all()
            raise
        with stripe.changed:
            stripe.taking = False
            stripe.fd, stripe.exclusive, stripe.depths[me] = fd, exclusive, 1
            stripe.changed.notify_all()

    def _give(self, index: int) -> None:
        stripe, me = self._stripes[index], threading.get_ident()
        with stripe.changed:
            stripe.depths[me] -= 1
            if stripe.depths[me]:
                return
            del stripe.depths[me]
            if not stripe.depths:
                fd, stripe.fd, stripe.exclusive = stripe.fd, None, False
                if fd is not None:
                    os.close(fd)  # closing the only descriptor of the file releases its flock
                stripe.changed.notify_all()


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

    def _session(self) -> tuple[psycopg.Connection, dict[str, tuple[bool, int]]]:
        """This thread's connection and, per key it holds, whether exclusively and how deep."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg  # by PostgreSQL drives only: a fifth of the CPU time of every start went to it

            conn = self._local.conn = psycopg.connect(self._url, autocommit=True)
            self._local.held = {}  # a closed session held nothing
        return conn, self._local.held

    @contextmanager
    def locked(self, *keys: str, shared: Iterable[str] = ()) -> Iterator[None]:
        conn, held = self._session()
        wanted = sorted(((f"{self._namespace}:{key}", exclusive) for key, exclusive in _modes(keys, shared).items()),
                        key=lambda item: _stable_hash(item[0]))
        for name, exclusive in wanted:
            if exclusive and name in held and not held[name][0]:
                _refuse_upgrade(name)
        new = [(name, exclusive) for name, exclusive in wanted if name not in held]
        if new:
            try:
                _call(conn, "pg_advisory_lock", new)
            except BaseException:
                conn.close()  # the statement may have taken some: ending the session frees them
                raise
        for name, exclusive in wanted:
            mode, depth = held.get(name, (exclusive, 0))
            held[name] = (mode, depth + 1)
        try:
            yield
        finally:
            freed = []
            for name, _exclusive in wanted:
                mode, depth = held[name]
                if depth > 1:
                    held[name] = (mode, depth - 1)
                else:
                    del held[name]
                    freed.append((name, mode))
            if freed and not conn.closed:
                _call(conn, "pg_advisory_unlock", freed)


def _call(conn: psycopg.Connection, function: str, names: list[tuple[str, bool]]) -> None:
    """`function` (or its `_shared` twin) on each of `names`, in order, in one statement."""
    calls = ", ".join(f"{function}{'' if exclusive else '_shared'}(hashtextextended(%s, 0))" for _name, exclusive in names)
    conn.execute(f"select {calls}", [name for name, _exclusive in names])


def cluster_locks(database: Database, root: Path, namespace: str, stripes: int = 256) -> ClusterLocks:
    """The locks of `namespace` for the nodes sharing `database` and the storage `root`."""
    if database.dialect == "postgresql":
        return AdvisoryLocks(database.url, namespace)
    return StripedFileLocks(root / "locks" / namespace, stripes)
