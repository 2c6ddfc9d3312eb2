"""bench/engine.py: one file served by nginx on loopback, fetched by curl and by fetchdrive
(from trigger upload to file visible) in turn, three rounds. Prints the times, the ratio,
and the fetchdrive server's memory growth. Goal: ratio <= 1.0, growth < 64 MiB.

    python bench/engine.py [--size-mib 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from support import current_rss, fetchdrive_server, make_file, nginx, peak_rss, timed, wait_until

TRIGGER = "[InternetShortcut]\r\nURL={url}\r\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    try:
        (work / "www").mkdir()
        make_file(work / "www" / "big.bin", args.size_mib * 1024 * 1024)
        with nginx(work / "www") as origin:
            server = fetchdrive_server(work / "fetchdrive")  # default settings: 4 connections per task
            session = server.session("bench", "bench-password")
            curl_times, fetchdrive_times, growths = [], [], []
            for round_number in range(args.rounds):
                target = work / "curl.bin"
                curl_times.append(timed(lambda: subprocess.run(
                    ["curl", "-sS", "-o", str(target), f"{origin}/big.bin"], check=True)))
                target.unlink()
                final = server.space("bench") / "downloads" / f"big-{round_number}.bin"

                def fetch() -> None:
                    trigger = TRIGGER.format(url=f"{origin}/big.bin") + f"filename={final.name}\r\n"
                    session.put(server.dav(f"downloads/r{round_number}.url"), data=trigger.encode())
                    wait_until(final.exists)

                baseline = current_rss(server.process.pid)
                fetchdrive_times.append(timed(fetch))
                growths.append(peak_rss(server.process.pid) - baseline)
                # A fresh transfer each round: forget the cached copy.
                session.delete(server.dav(f"downloads/{final.name}"))
                server.cli("gc")
                server.restart()
            server.stop()
        best_curl, best_fd = min(curl_times), min(fetchdrive_times)
        size = args.size_mib * 1024 * 1024
        print(f"file: {args.size_mib} MiB from nginx on loopback, {args.rounds} rounds (best of each)")
        print(f"curl:        {best_curl:7.2f} s  {size / best_curl / 2**20:8.1f} MiB/s   all: {', '.join(f'{t:.2f}' for t in curl_times)}")
        print(f"fetchdrive:  {best_fd:7.2f} s  {size / best_fd / 2**20:8.1f} MiB/s   all: {', '.join(f'{t:.2f}' for t in fetchdrive_times)}")
        print(f"ratio fetchdrive/curl: {best_fd / best_curl:.2f} (goal <= 1.0)")
        print(f"server memory growth (peak RSS over RSS before the transfer): {max(growths) / 2**20:.1f} MiB (goal < 64)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
