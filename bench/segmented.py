"""bench/segmented.py: segmented downloads against aria2c and curl, in one run.

1. nginx with `limit_rate 4m` per connection serves a 256 MiB file: fetchdrive with 8
   connections vs `aria2c -x8 -s8` (goal >= 0.9x its throughput) and vs fetchdrive with 1
   connection (goal >= 6x).
2. Unthrottled 1 GiB: fetchdrive (8 connections) vs curl, taking turns, best of three
   (goal: at most 1.0x curl's time), and the server's memory growth (goal < 64 MiB).

    python bench/segmented.py [--throttled-mib 256] [--big-mib 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from support import current_rss, fetchdrive_server, make_file, nginx, peak_rss, timed, wait_until


def fetchdrive_time(work: Path, origin: str, connections: int, name: str) -> tuple[float, int]:
    server = fetchdrive_server(work / f"fd-{connections}-{name}", {"engine.connections_per_task": connections})
    session = server.session("bench", "bench-password")
    final = server.space("bench") / "downloads" / name
    baseline = current_rss(server.process.pid)
    trigger = f"[InternetShortcut]\r\nURL={origin}/{name}\r\n"
    seconds = timed(lambda: (session.put(server.dav("downloads/t.url"), data=trigger.encode()), wait_until(final.exists)))
    growth = peak_rss(server.process.pid) - baseline
    server.stop()
    shutil.rmtree(work / f"fd-{connections}-{name}", ignore_errors=True)
    return seconds, growth


def tool_time(command: list[str], output: Path) -> float:
    seconds = timed(lambda: subprocess.run(command, check=True, capture_output=True))
    output.unlink(missing_ok=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--throttled-mib", type=int, default=256)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the unthrottled comparison (default 3)")
    args = parser.parse_args()
    for tool in ("aria2c", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed: apt-get install {'aria2' if tool == 'aria2c' else tool}")
    work = Path(tempfile.mkdtemp(prefix="bench-segmented-"))
    try:
        (work / "www").mkdir()
        make_file(work / "www" / "throttled.bin", args.throttled_mib * 2**20)
        make_file(work / "www" / "big.bin", args.big_mib * 2**20)
        out = work / "out.bin"
        with nginx(work / "www", "location /slow/ { alias %s/; limit_rate 4m; }" % (work / "www")) as origin:
            slow = f"{origin}/slow"
            aria = tool_time(["aria2c", "-q", "-x8", "-s8", "--allow-overwrite=true", "-d", str(work), "-o", out.name,
                              f"{slow}/throttled.bin"], out)
            fd8, _ = fetchdrive_time(work, slow, 8, "throttled.bin")
            fd1, _ = fetchdrive_time(work, slow, 1, "throttled.bin")
            size = args.throttled_mib * 2**20
            print(f"throttled (limit_rate 4m per connection), {args.throttled_mib} MiB:")
            print(f"  aria2c -x8 -s8:           {aria:7.2f} s  {size / aria / 2**20:7.1f} MiB/s")
            print(f"  fetchdrive, 8 connections: {fd8:7.2f} s  {size / fd8 / 2**20:7.1f} MiB/s  "
                  f"= {aria / fd8:.2f}x aria2c's throughput (goal >= 0.9)")
            print(f"  fetchdrive, 1 connection:  {fd1:7.2f} s  {size / fd1 / 2**20:7.1f} MiB/s  "
                  f"-> 8 connections are {fd1 / fd8:.1f}x faster (goal >= 6)")
            curl_times, fd_times, growths = [], [], []
            for _ in range(args.rounds):  # taking turns, best of each
                curl_times.append(tool_time(["curl", "-sS", "-o", str(out), f"{origin}/big.bin"], out))
                seconds, growth = fetchdrive_time(work, origin, 8, "big.bin")
                fd_times.append(seconds)
                growths.append(growth)
            curl, fd_big = min(curl_times), min(fd_times)
            print(f"unthrottled, {args.big_mib} MiB, best of {args.rounds}:")
            print(f"  curl:                      {curl:7.2f} s   all: {', '.join(f'{t:.2f}' for t in curl_times)}")
            print(f"  fetchdrive, 8 connections: {fd_big:7.2f} s  = {fd_big / curl:.2f}x curl's time (goal <= 1.0)"
                  f"   all: {', '.join(f'{t:.2f}' for t in fd_times)}")
            print(f"  server memory growth: {max(growths) / 2**20:.1f} MiB (goal < 64)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
