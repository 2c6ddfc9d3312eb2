"""engine/cluster_locks.py: a key held by one thread of one process excludes every other
thread of every process, on the embedded database (stripes and `flock`) and on PostgreSQL
(advisory locks), and a holder may take its keys again.

Real processes race on a counter in a file, read and rewritten under the lock: a lost update
shows as a short count.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.server_process import REPO

ROUNDS = 150
PROCESSES = 3
THREADS = 2

# Each thread: read the counter, let others run, write it back plus one, all under `keys`;
# the inner `locked` takes the first key again (re-entrant) with one more of its own.
WORKER = """
import sys, threading, time
from pathlib import Path
from engine.cluster_locks import AdvisoryLocks, StripedFileLocks

kind, where, counter, *keys = sys.argv[1:]
locks = StripedFileLocks(Path(where), 16) if kind == "sqlite" else AdvisoryLocks(where, "test")
counter = Path(counter)

def run():
    for _ in range({rounds}):
        with locks.locked(*keys):
            seen = int(counter.read_text())
            time.sleep(0)
            with locks.locked(keys[0], "inner-" + keys[0]):
                counter.write_text(str(seen + 1))

threads = [threading.Thread(target=run) for _ in range({threads})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
""".format(rounds=ROUNDS, threads=THREADS)


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "locks")
    return "postgresql", request.getfixturevalue("postgres_cluster").new_database()


@pytest.mark.parametrize("keys_of", [
    lambda process: ["/spaces/alice/file.bin"],                                   # one key everywhere
    lambda process: ["/a", f"/mine-{process}"],                                   # one shared, one each
    lambda process: ["/b", "/a", f"/mine-{process}"] if process % 2 else [f"/mine-{process}", "/a", "/b"],
], ids=["one key", "shared and own", "shared in either order"])
def test_a_key_held_in_one_process_excludes_every_other_thread_and_process(tmp_path, where, keys_of):
    kind, place = where
    counter = tmp_path / "counter"
    counter.write_text("0")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, kind, place, str(counter), *keys_of(process)],
                                cwd=REPO, stderr=subprocess.PIPE, text=True) for process in range(PROCESSES)]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors
    assert int(counter.read_text()) == PROCESSES * THREADS * ROUNDS

