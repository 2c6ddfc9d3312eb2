"""The nodes sharing one database: each records itself and renews a heartbeat.

A node is one `fetchdrive serve` process, named by `server.node` (default: the host name).
It writes `seen_at` every third of `engine.lease`; a node not seen for `engine.lease` seconds
is gone, and what it held (running tasks, quota reservations) may be taken over by the others.
With the embedded database there is one node, and the table holds just it.
"""

from __future__ import annotations

import socket
import threading
import time

from engine.database import Database


def default_name() -> str:
    return socket.gethostname()


class Nodes:
    """This node's row in `nodes` and its heartbeat thread; answers who else is alive."""

    def __init__(self, database: Database, name: str, lease: float) -> None:
        self._database = database
        self.name = name or default_name()
        self.lease = lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Record this node as alive now and keep it so until `stop`."""
        now = time.time()
        with self._database.write() as db:
            db.execute("insert into nodes (name, started_at, seen_at) values (?, ?, ?) "
                       "on conflict (name) do update set started_at = excluded.started_at, seen_at = excluded.seen_at",
                       [self.name, now, now])
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="node-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._database.write() as db:
                db.execute("update nodes set seen_at = ? where name = ?", [time.time(), self.name])

    def alive(self) -> list[str]:
        """Names of the nodes seen within the lease, this one included."""
        with self._database.read() as db:
            rows = db.execute("select name from nodes where seen_at >= ? order by name",
                              [time.time() - self.lease]).fetchall()
        return [row[0] for row in rows]

    def stop(self) -> None:
        """Stop the heartbeat; the row stays, and ages out after the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
