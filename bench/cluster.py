"""bench/cluster.py: one drive on one, two and three nodes (SPEC 8, issue 17).

The nodes are `fetchdrive serve` processes on loopback ports, sharing one PostgreSQL (a
throwaway cluster, the tests' fixture `tests/postgres.py`) and one storage root. The same
nodes serve every step; a node is added (or a killed one started again) before each size:

1. Claims: `--tasks` tasks, each for a URL of its own that the loopback origin answers with
   404, so that a try is a claim, one request and a failure, with no transfer. They are
   written into the database in one transaction while the nodes run (the way a burst of
   triggers lands), with PostgreSQL's statistics brought up to date in it (see the comment
   there); claims per second = tasks / (last task's end - first task's claim), so that the
   idle scheduler's poll before the first claim does not count.
2. WebDAV through all nodes: GET of a 4 KiB file and PROPFIND Depth 1 of a folder of
   `--entries` files, one wrk per node at once, the `--connections` split evenly over the
   nodes (12: 12 / 6+6 / 4+4+4), the rates summed; best of `--rounds`, every round printed.
   Authentication is Basic on every request, as in bench/dav.py.
3. Failover (two nodes and more): a download from a slow loopback origin (`--rate` bytes/s,
   one connection), `engine.lease` set to `--lease` seconds; the node running it is found
   in the database and killed with SIGKILL; measured: from the kill to the origin seeing
   the download's next request (a `Range` request from another node, resuming at the saved
   bytes). Expected: at most the lease plus a scheduler tick (1 s), at least two thirds of
   the lease (the lease was renewed at most a third of it before the kill).

Every node runs on this one machine, so the nodes share its cores: the figures show what
several nodes cost and that work spreads over them, not what three machines would give.

    python bench/cluster.py [--nodes 3] [--tasks 1000] [--entries 100] [--seconds 5]
                            [--rounds 3] [--connections 12] [--lease 5] [--rate 131072]
                            [--database postgresql|sqlite]

`--database sqlite` runs the same steps on the embedded database file in the shared root,
which several processes on one machine may share (not several machines: it is the stand-in
used while developing). Needs wrk (apt-get install wrk) and, for PostgreSQL, Debian's
postgresql package.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from dav import PROPFIND_LUA, wait_idle, wrk
from support import wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.database import Database, open_database  # noqa: E402
from engine.kinds import SourceKind, TaskState  # noqa: E402
from tests.origin import Origin  # noqa: E402
from tests.postgres import PostgresCluster  # noqa: E402
from tests.server_process import ServerProcess  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
SMALL_SIZE = 4096
ENDED = (TaskState.FAILED, TaskState.DONE, TaskState.CANCELLED)


@contextmanager
def cluster_database(kind: str) -> Iterator[str]:
    """The `database.url` every node gets: a database on a throwaway PostgreSQL (the tests'
    cluster), or the embedded file."""
    if kind == "sqlite":
        yield "sqlite:"
        return
    postgresql = PostgresCluster().start()
    try:
        yield postgresql.new_database()
    finally:
        postgresql.stop()


@dataclass
class Cluster:
    """Nodes `node-1`, `node-2`... with one database and one storage root."""

    work: Path
    url: str
    lease: float
    nodes: list[ServerProcess] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.work / "shared"

    def grow_to(self, count: int) -> None:
        """Start nodes until `count` run (a killed one is started again first)."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                node.start()
        while len(self.nodes) < count:
            name = f"node-{len(self.nodes) + 1}"
            node = ServerProcess(self.work / name, {
                "server.node": name, "server.threads": 50, "storage.root": str(self.root), "database.url": self.url,
                "engine.lease": self.lease, "engine.connections_per_task": 1,
                # One user holds every task here; the per-user limit would otherwise be the bottleneck.
                "engine.per_user": 256,
            })
            node.start()
            self.nodes.append(node)

    def by_name(self, name: str) -> ServerProcess:
        return next(node for node in self.nodes if node.config_path.parent.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# ---------------------------------------------------------------------------------------
# 1. Claims


def claims_per_second(database: Database, origin: Origin, tasks: int, batch: int) -> float:
    """Tasks claimed and ended per second over all running nodes (see the module's 1.)."""
    prefix = f"/missing/{batch}/"
    now = time.time()
    with database.write() as db:
        ids = [db.execute(
            'insert into tasks ("user", source, kind, folder, trigger_path, state, display_name, bytes_done, '
            "attempts, instant, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) returning id",
            [USER, origin.url(f"{prefix}{number}"), SourceKind.URL, "downloads", None, TaskState.QUEUED,
             f"{number}.bin", 0, 0, 0, now, now]).fetchone()[0] for number in range(tasks)]
        if database.dialect == "postgresql":
            # Statistics as autovacuum keeps them, in the same commit: with a fresh table's
            # (none) the planner probes the claim's per-user count through the wrong index,
            # and a claim took 1.5 s at 1,000 queued tasks instead of 28 ms.
            db.execute("analyze tasks")
    # The origin logs in monotonic time, the tasks' finished_at is wall-clock time.
    wall_minus_monotonic = time.time() - time.monotonic()
    first, last = min(ids), max(ids)

    def all_ended() -> bool:
        with database.read() as db:
            return db.execute("select count(*) from tasks where id between ? and ? and state not in (?, ?, ?)",
                              [first, last, *ENDED]).fetchone()[0] == 0

    wait_until(all_ended, timeout=600, poll=0.2)
    with database.read() as db:
        finished, failed = db.execute(
            "select max(finished_at), sum(case when state = ? then 1 else 0 end) from tasks where id between ? and ?",
            [TaskState.FAILED, first, last]).fetchone()
    if failed != tasks:
        raise SystemExit(f"{tasks - failed} of the {tasks} tasks did not fail as they should (404 from the origin)")
    first_try = min(entry.at for entry in origin.requests if entry.path.startswith(prefix)) + wall_minus_monotonic
    return tasks / (finished - first_try)


# ---------------------------------------------------------------------------------------
# 2. WebDAV through all nodes


def rates_through_all(nodes: list[ServerProcess], path: str, seconds: float, connections: int,
                      script: Path | None = None) -> float:
    """One wrk per node at once, `connections` split over them; requests per second summed."""
    share = max(2, connections // len(nodes))
    rates: list[float] = []
    lock = threading.Lock()

    def run(node: ServerProcess) -> None:
        rate = wrk(node.dav(path), BASIC, seconds, script, connections=share).rate
        with lock:
            rates.append(rate)

    threads = [threading.Thread(target=run, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(rates) != len(nodes):
        raise SystemExit(f"wrk failed against {len(nodes) - len(rates)} node(s)")
    return sum(rates)


# ---------------------------------------------------------------------------------------
# 3. Failover


@dataclass
class Failover:
    seconds: float  # from the kill to the resumed request
    resumed_at: int  # the byte the other node resumed from
    killed: str
    took_over: str


def failover(cluster: Cluster, database: Database, origin: Origin, rate: int, number: int) -> Failover:
    path = f"/slow/{number}.bin"
    origin.add(path, os.urandom(rate * 300), rate=rate)  # five minutes' worth
    session = requests.Session()
    session.auth, session.trust_env = (USER, PASSWORD), False
    answer = session.post(cluster.nodes[0].url("/api/v1/tasks"), json={"url": origin.url(path)})
    answer.raise_for_status()
    task_id = answer.json()["id"]

    def holder() -> tuple[str | None, int]:
        with database.read() as db:
            row = db.execute("select node, bytes_done from tasks where id = ? and state = ?",
                             [task_id, TaskState.DOWNLOADING]).fetchone()
        return (row[0], row[1]) if row else (None, 0)

    # Running, with some bytes saved, and its lease renewed at least once.
    wait_until(lambda: holder()[1] >= rate * 2, timeout=60, poll=0.1)
    killed = holder()[0]
    if killed is None:
        raise SystemExit("the database names no node for the running download: these nodes keep no leases")
    victim = cluster.by_name(killed)
    before = len(origin.requests)
    victim.kill()
    killed_at = time.monotonic()

    def resumed() -> bool:
        return any(entry.path == path and entry.range for entry in origin.requests[before:])

    wait_until(resumed, timeout=cluster.lease * 4 + 30, poll=0.02)
    entry = next(entry for entry in origin.requests[before:] if entry.path == path and entry.range)
    took_over = holder()[0] or "?"
    survivor = next(node for node in cluster.nodes if node is not victim)
    session.delete(survivor.url(f"/api/v1/tasks/{task_id}"))
    return Failover(entry.at - killed_at, int(entry.range.split("=")[1].split("-")[0]), killed, took_over)


# ---------------------------------------------------------------------------------------
# Report


@dataclass
class Figures:
    nodes: int
    claims: float
    get: list[float]
    propfind: list[float]
    failover: Failover | None


def print_table(rows: list[Figures], args: argparse.Namespace) -> None:
    print(f"\n{'nodes':>5}  {'claims/s':>9}  {'GET 4 KiB/s':>12}  {f'PROPFIND {args.entries}/s':>14}  "
          f"failover, lease {args.lease:g} s")
    for row in rows:
        moved = (f"{row.failover.seconds:.2f} s ({row.failover.killed} -> {row.failover.took_over}, "
                 f"resumed at byte {row.failover.resumed_at:,})" if row.failover else "-")
        print(f"{row.nodes:>5}  {row.claims:>9,.0f}  {max(row.get):>12,.0f}  {max(row.propfind):>14,.1f}  {moved}")
    print("rounds (requests/s): " + "; ".join(
        f"{row.nodes} node(s): GET " + " / ".join(f"{rate:,.0f}" for rate in row.get)
        + ", PROPFIND " + " / ".join(f"{rate:,.1f}" for rate in row.propfind) for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="measure 1, 2, ... up to this many nodes (default 3)")
    parser.add_argument("--tasks", type=int, default=1000, help="tasks claimed per size (default 1000)")
    parser.add_argument("--entries", type=int, default=100, help="files in the PROPFIND folder (default 100)")
    parser.add_argument("--seconds", type=float, default=5, help="duration of each wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per size, best kept (default 3)")
    parser.add_argument("--connections", type=int, default=12, help="wrk connections over all nodes (default 12)")
    parser.add_argument("--lease", type=float, default=5, help="engine.lease in seconds (default 5)")
    parser.add_argument("--rate", type=int, default=128 * 1024, help="the slow origin's bytes/s (default 128 KiB/s)")
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql",
                        help="one PostgreSQL (default), or the embedded file as a one-machine stand-in")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    rows: list[Figures] = []
    try:
        with cluster_database(args.database) as url, Origin() as origin:
            cluster = Cluster(work, url, args.lease)
            try:
                cluster.grow_to(1)
                cluster.nodes[0].add_user(USER, PASSWORD, quota="none")
                space = cluster.root / "spaces" / USER
                rng = random.Random(1)
                (space / "small.bin").write_bytes(os.urandom(SMALL_SIZE))
                (space / "folder").mkdir()
                for number in range(args.entries):
                    (space / "folder" / f"document-{number:04}.txt").write_bytes(rng.randbytes(rng.randrange(100, 20_000)))
                script = work / "propfind.lua"
                script.write_text(PROPFIND_LUA)
                database = open_database(url, cluster.root)
                print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
                      f"database {database.dialect}; every node on this machine")
                for count in range(1, args.nodes + 1):
                    cluster.grow_to(count)
                    running = cluster.nodes[:count]
                    pids = [node.process.pid for node in running]
                    claims = claims_per_second(database, origin, args.tasks, count)
                    wait_idle(pids)
                    for node in running:  # warm-up: each node's first login and listing
                        wrk(node.dav("folder/"), BASIC, 1, script, connections=2)
                    gets, propfinds = [], []
                    for _ in range(args.rounds):
                        wait_idle(pids)
                        gets.append(rates_through_all(running, "small.bin", args.seconds, args.connections))
                        wait_idle(pids)
                        propfinds.append(rates_through_all(running, "folder/", args.seconds, args.connections, script))
                    moved = failover(cluster, database, origin, args.rate, count) if count >= 2 else None
                    rows.append(Figures(count, claims, gets, propfinds, moved))
                    print(f"  {count} node(s): {claims:,.0f} claims/s, GET {max(gets):,.0f}/s, "
                          f"PROPFIND {max(propfinds):,.1f}/s"
                          + (f", failover {moved.seconds:.2f} s" if moved else ""), flush=True)
                database.close()
            finally:
                cluster.stop()
        print_table(rows, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
