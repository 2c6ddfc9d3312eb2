"""bench/tasks.py: one user with 10,000 tasks against the same user with 300, side by side.
The API's list and the scheduler's queries should cost about the same at both sizes
(indexed queries, no full-table scans per tick); the downloads folder lists one `.part`
placeholder per unfinished task, so its listing is compared per entry.

    python bench/tasks.py [--tasks 10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from support import fetchdrive_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.database import SQLITE_URL, open_database  # noqa: E402
from engine.kinds import SourceKind, TaskState  # noqa: E402
from engine.tasks import TaskStore  # noqa: E402


def fill(data: Path, count: int) -> None:
    """Tasks as a long-lived account has them: mostly done or failed, some waiting to retry."""
    store = TaskStore(open_database(SQLITE_URL, data))
    later = time.time() + 86400
    rows = []
    for number in range(count):
        state = (TaskState.DONE, TaskState.FAILED, TaskState.WAITING)[number % 3] if number % 100 else TaskState.WAITING
        rows.append({
            "user": "bench", "source": f"https://example.invalid/file-{number}.bin", "kind": SourceKind.URL,
            "folder": "downloads", "trigger_path": None, "state": state, "display_name": f"file-{number}.bin",
            "bytes_done": 0, "attempts": 1, "instant": 0, "next_attempt_at": later if state == TaskState.WAITING else None,
            "created_at": time.time(), "updated_at": time.time(),
        })
    columns = list(rows[0])
    quoted = ", ".join(f'"{name}"' for name in columns)
    insert = f"insert into tasks ({quoted}) values ({', '.join('?' for _ in columns)})"
    with store._database.write() as db:  # one transaction; the store has no bulk API of its own
        for row in rows:
            db.execute(insert, [row[name] for name in columns])


def median_ms(action, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def measure(work: Path, count: int, repeat: int) -> dict[str, float]:
    server = fetchdrive_server(work / f"tasks-{count}")
    server.stop()
    fill(server.data, count)
    server.start()
    session = server.session("bench", "bench-password")
    store = TaskStore(open_database(SQLITE_URL, server.data))

    def list_downloads() -> int:
        response = session.request("PROPFIND", server.dav("downloads/"), headers={"Depth": "1"})
        response.raise_for_status()
        return response.text.count("<D:response>") - 1  # minus the folder itself

    entries = list_downloads()
    figures = {
        "API list, newest 100": median_ms(lambda: session.get(server.url("/api/v1/tasks?limit=100")).raise_for_status(), repeat),
        "API list, state=failed": median_ms(lambda: session.get(server.url("/api/v1/tasks?limit=100&state=failed")).raise_for_status(), repeat),
        "API one task": median_ms(lambda: session.get(server.url("/api/v1/tasks/1")).raise_for_status(), repeat),
        "PROPFIND downloads/, per entry": median_ms(list_downloads, max(repeat // 10, 3)) / entries,
        # Every task waits for a later try: the claim finds none, as an idle worker's does.
        "scheduler tick (claim + next wake)": median_ms(lambda: (store.claim("bench", lease=30, per_user=2),
                                                                 store.next_wake()), repeat),
    }
    server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    try:
        small = measure(work, 300, args.requests)
        large = measure(work, args.tasks, args.requests)
        print(f"median time per operation, one user with 300 vs {args.tasks} tasks")
        for name in small:
            print(f"  {name:40s} {small[name]:7.3f} ms  {large[name]:7.3f} ms  ratio {large[name] / small[name]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
