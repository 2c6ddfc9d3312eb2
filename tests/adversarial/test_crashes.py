"""kill -9 of the server at random moments during uploads and downloads, ten times over.
After each restart: the database is sound, every completed upload and download is intact,
unfinished tasks resume and complete, each download is published once, no temporary data is
left, and quota equals a recount."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
import time

import requests

from provider.quota import tree_size
from tests.downloads_helpers import url_shortcut, wait_for
from tests.quota_helpers import uploads_left

CRASHES = 10


def test_kill_9_at_random_moments_loses_nothing(make_server, origin, tally):
    rng = random.Random(7)
    server = make_server(settings={"engine.connections_per_task": 4})
    server.add_user("crash", "crash-password", quota="2G")
    bodies = {f"/file{n}.bin": rng.randbytes(rng.choice([300_000, 3_000_000, 12_000_000])) for n in range(CRASHES)}
    for path, body in bodies.items():
        origin.add(path, body, rate=4 * 1024 * 1024)
    uploaded: dict[str, bytes] = {}
    for round_number in range(CRASHES):
        session = server.session("crash", "crash-password")
        path = f"/file{round_number}.bin"
        session.put(server.dav(f"downloads/t{round_number}.url"), data=url_shortcut(origin.url(path)))
        stop = threading.Event()

        def upload_loop() -> None:
            count = 0
            while not stop.is_set():
                name = f"up-{round_number}-{count}.bin"
                data = rng.randbytes(rng.randint(1, 400_000))
                try:
                    response = session.put(server.dav(name), data=data, timeout=5)
                except requests.RequestException:
                    return
                tally["requests made"] += 1
                if response.status_code in (201, 204):
                    uploaded[name] = data
                count += 1

        worker = threading.Thread(target=upload_loop)
        worker.start()
        time.sleep(rng.uniform(0.2, 1.5))
        server.kill()
        stop.set()
        worker.join()
        tally["crashes survived"] += 1
        server.start()
        database = sqlite3.connect(server.data / "fetchdrive.sqlite")
        assert database.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        database.close()
    session = server.session("crash", "crash-password")
    downloads = server.space("crash") / "downloads"
    for round_number in range(CRASHES):
        name = f"file{round_number}.bin"
        wait_for(lambda: (downloads / name).exists(), timeout=120, message=name)
        assert hashlib.sha256((downloads / name).read_bytes()).digest() == hashlib.sha256(bodies[f"/{name}"]).digest()
        tally["downloads delivered"] += 1
        tally["files checked"] += 1
    for name, data in uploaded.items():
        assert (server.space("crash") / name).read_bytes() == data, name
        tally["files checked"] += 1
    wait_for(lambda: not any((server.data / "tmp" / "downloads").iterdir()), message="no temporary data")
    assert not uploads_left(server)
    wait_for(lambda: not [name for name in os.listdir(downloads) if name.endswith(".url")], message="triggers gone")
    assert sorted(os.listdir(downloads)) == sorted(f"file{n}.bin" for n in range(CRASHES))  # each once
    assert session.get(server.url("/api/v1/me")).json()["used_bytes"] == tree_size(server.space("crash"))
    tasks = session.get(server.url("/api/v1/tasks?limit=1000")).json()
    assert {task["state"] for task in tasks} == {"done"}
