"""Push to devices: how soon a finished download is on a synced device's disk, and what idle
event streams cost the server.

1. 100 downloads from nginx (1 MiB each), each trigger with `send-to=laptop`, while
   `fetchdrive sync --device laptop --watch 3600` runs: the time from the task's `done`
   (its finished_at) to the file under its final name in the device's folder (p50, p99).
2. 200 idle `/api/v1/events` streams (10 users x 20, raw sockets): the server's resident
   memory, threads and CPU seconds over 30 s at rest, without and with them.

Usage: python bench/push.py [--downloads 100] [--streams 200]
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from support import current_rss, fetchdrive_server, make_file, nginx, wait_until

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def push_latency(work: Path, downloads: int) -> None:
    files = work / "origin"
    files.mkdir()
    for number in range(downloads):
        make_file(files / f"f{number}.bin", 1024 * 1024)
    server = fetchdrive_server(work / "server", {"events.keepalive": 15})
    session = server.session("bench", PASSWORD)
    device_dir = work / "laptop"
    device = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "sync", "--server", server.base_url, "--user", "bench",
         "--device", "laptop", "--watch", "3600", str(device_dir)],
        cwd=REPO, env={**os.environ, "FETCHDRIVE_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: any(d["name"] == "laptop" for d in session.get(server.url("/api/v1/devices")).json()), 60)
        lags = []
        with nginx(files) as origin:
            for number in range(downloads):
                name = f"f{number}.bin"
                trigger = f"[InternetShortcut]\r\nURL={origin}/{name}\r\nsend-to=laptop\r\n".encode()
                session.put(server.dav(f"downloads/t{number}.url"), data=trigger)
                target = device_dir / name
                wait_until(target.exists, 60, poll=0.002)
                arrived = time.time()
                task = next(t for t in session.get(server.url("/api/v1/tasks?limit=5")).json() if t["name"] == name)
                lags.append(arrived - task["finished_at"])
        print(f"done -> file on the device's disk, {downloads} downloads of 1 MiB: "
              f"p50 {_percentile(lags, 0.5) * 1000:.0f} ms, p99 {_percentile(lags, 0.99) * 1000:.0f} ms, "
              f"max {max(lags) * 1000:.0f} ms, mean {statistics.mean(lags) * 1000:.0f} ms")
    finally:
        device.terminate()
        device.wait()
        server.stop()


def _threads_and_cpu(pid: int) -> tuple[int, float]:
    threads = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                       if line.startswith("Threads:")))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return threads, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _at_rest(pid: int, seconds: float) -> tuple[int, int, float]:
    """(resident bytes, threads, CPU seconds used over `seconds`)."""
    _threads, cpu_before = _threads_and_cpu(pid)
    time.sleep(seconds)
    threads, cpu_after = _threads_and_cpu(pid)
    return current_rss(pid), threads, cpu_after - cpu_before


def _open_stream(port: int, user: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    sock.sendall(f"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"event: ready" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("a stream was refused: " + head.decode(errors="replace"))
        head += chunk
    return sock


def idle_streams(work: Path, streams: int, rest: float) -> None:
    server = fetchdrive_server(work / "idle", {"server.threads": 50})
    users = [f"u{number}" for number in range(max(1, streams // 20))]
    for user in users:
        server.add_user(user, PASSWORD)
    pid = server.process.pid
    port = int(server.base_url.rsplit(":", 1)[1])
    time.sleep(2)
    rss0, threads0, cpu0 = _at_rest(pid, rest)
    opened = [_open_stream(port, users[number % len(users)]) for number in range(streams)]
    rss1, threads1, cpu1 = _at_rest(pid, rest)
    print(f"server at rest, no streams:   {rss0 / 2**20:.1f} MiB resident, {threads0} threads, "
          f"{cpu0:.2f} CPU s in {rest:.0f} s")
    print(f"server at rest, {streams} streams: {rss1 / 2**20:.1f} MiB resident (+{(rss1 - rss0) / 2**20:.1f}), "
          f"{threads1} threads (+{threads1 - threads0}), {cpu1:.2f} CPU s in {rest:.0f} s")
    for sock in opened:
        sock.close()
    server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--downloads", type=int, default=100)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rest", type=float, default=30, help="seconds measured at rest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as folder:
        work = Path(folder)
        push_latency(work, args.downloads)
        idle_streams(work, args.streams, args.rest)


if __name__ == "__main__":
    main()
