"""engine/cluster_locks.py: a key held by one thread of one process excludes every other
thread of every process, on the embedded database (stripes and `flock`) and on PostgreSQL
(advisory locks), and a holder may take its keys again. Keys taken shared (the folders above a
changed path, provider/path_locks.py) are held by many at once, and by none while one holds
them exclusively (a MOVE of the folder); a holder cannot take a key it shares exclusively.

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



SHARED_ROUNDS = 50  # each a rewrite of the state that a sharer must never see half done

# Each process: two threads hold a key shared at once; then a mover rewrites the state holding
# "/f" exclusively while two threads read it holding "/f" shared: never a move half done.
SHARED_WORKER = """
import sys, threading, time
from pathlib import Path
from engine.cluster_locks import AdvisoryLocks, StripedFileLocks

kind, where, state, process = sys.argv[1:]
locks = StripedFileLocks(Path(where), 16) if kind == "sqlite" else AdvisoryLocks(where, "test")
state = Path(state)
together = threading.Barrier(2, timeout=60)
errors = []

def mover():
    for _ in range({rounds}):
        with locks.locked("/f"):
            state.write_text("moving")
            time.sleep(0)
            state.write_text("still")

def together_once():
    # A key of this process's own: one another process's mover waits for would queue the second
    # sharer behind that mover (PostgreSQL grants in turn) while the first waits for the second.
    with locks.locked(shared=["/", f"/together-{{process}}"]):
        together.wait()

def below(thread):
    try:
        for _ in range({rounds}):
            with locks.locked(f"/f/file-{{process}}-{{thread}}", shared=["/f"]):
                seen = state.read_text()
                if seen != "still":
                    errors.append(seen)
    except Exception as error:
        errors.append(repr(error))

sharers = [threading.Thread(target=together_once) for _ in range(2)]
for thread in sharers:
    thread.start()
for thread in sharers:
    thread.join()
threads = [threading.Thread(target=mover)] + [threading.Thread(target=below, args=(n,)) for n in range(2)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
sys.exit(f"seen: {{errors[:3]}}" if errors else 0)
""".format(rounds=SHARED_ROUNDS)

UPGRADE = """
import sys
from pathlib import Path
from engine.cluster_locks import AdvisoryLocks, StripedFileLocks

kind, where = sys.argv[1:]
locks = StripedFileLocks(Path(where), 16) if kind == "sqlite" else AdvisoryLocks(where, "test")
with locks.locked("/f/file", shared=["/f"]):
    with locks.locked("/f/file", shared=["/f"]):  # the same again: re-entrant
        pass
    try:
        with locks.locked("/f"):
            sys.exit("taken exclusively while held shared")
    except RuntimeError as error:
        print(error)
with locks.locked("/f"):  # all given back
    pass
"""


def test_a_key_held_shared_admits_other_sharers_and_excludes_an_exclusive_holder(tmp_path, where):
    kind, place = where
    state = tmp_path / "state"
    state.write_text("still")
    workers = [subprocess.Popen([sys.executable, "-c", SHARED_WORKER, kind, place, str(state), str(process)],
                                cwd=REPO, stderr=subprocess.PIPE, text=True) for process in range(PROCESSES)]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors


def test_a_key_held_shared_is_not_taken_exclusively_by_its_holder(where):
    kind, place = where
    done = subprocess.run([sys.executable, "-c", UPGRADE, kind, place], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cannot be taken exclusively" in done.stdout
