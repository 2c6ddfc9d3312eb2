"""bench/torrent.py: one torrent seeded by two libtorrent sessions on loopback (DHT off),
fetched by aria2c's BitTorrent client and by fetchdrive (from `.torrent` upload to file
visible) in turn. A tiny HTTP tracker on loopback names the two seeders to both downloaders.
Prints every round, the rates, the ratio and the server's memory growth.
Goals: fetchdrive's rate at least 0.9x aria2c's, memory growth under 100 MiB.

    python bench/torrent.py [--size-mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from support import current_rss, fetchdrive_server, free_port, make_file, peak_rss, timed, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.torrent_seeder import Seeder, announce_url, tracker  # noqa: E402  (the test suite's loopback seeder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("aria2c"):
        raise SystemExit("aria2c is not installed: apt-get install aria2")
    work = Path(tempfile.mkdtemp(prefix="bench-torrent-"))
    size = args.size_mib * 1024 * 1024
    try:
        seeders = [Seeder(work / f"seeder{n}") for n in (1, 2)]
        announce = tracker([f"127.0.0.1:{seeder.session.listen_port()}" for seeder in seeders])
        trackers = (announce_url(announce),)
        payload = make_file(work / "payload.bin", size).read_bytes()
        shared = [seeder.share("payload.bin", payload, trackers) for seeder in seeders]
        del payload
        torrent = work / "payload.torrent"
        torrent.write_bytes(shared[0].metainfo)
        server = fetchdrive_server(work / "fetchdrive", {"engine.torrent.dht": False})
        session = server.session("bench", "bench-password")
        aria_times, fetchdrive_times, growths = [], [], []
        for round_number in range(args.rounds):
            aria_dir = work / f"aria{round_number}"
            command = ["aria2c", "-q", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
                       "--enable-peer-exchange=false", "--seed-time=0", f"--listen-port={free_port()}",
                       "--file-allocation=none", "-d", str(aria_dir), str(torrent)]
            aria_times.append(timed(lambda: subprocess.run(command, check=True, timeout=600)))
            shutil.rmtree(aria_dir)
            final = server.space("bench") / "downloads" / f"round{round_number}" / "payload.bin"

            def fetch() -> None:
                session.request("MKCOL", server.dav(f"downloads/round{round_number}/"))
                session.put(server.dav(f"downloads/round{round_number}/payload.torrent"), data=torrent.read_bytes())
                wait_until(final.exists)

            baseline = current_rss(server.process.pid)
            fetchdrive_times.append(timed(fetch))
            growths.append(peak_rss(server.process.pid) - baseline)
            # A fresh transfer each round: forget the stored copy.
            session.request("DELETE", server.dav(f"downloads/round{round_number}/"))
            server.cli("gc")
            for item in (server.data / "torrents").glob("*.json"):
                item.unlink()
        server.stop()
        best_aria, best_fd = min(aria_times), min(fetchdrive_times)
        print(f"torrent: {args.size_mib} MiB from two libtorrent seeders on loopback, {args.rounds} rounds (best of each)")
        print(f"aria2c:      {best_aria:7.2f} s  {size / best_aria / 2**20:8.1f} MiB/s   all: {', '.join(f'{t:.2f}' for t in aria_times)}")
        print(f"fetchdrive:  {best_fd:7.2f} s  {size / best_fd / 2**20:8.1f} MiB/s   all: {', '.join(f'{t:.2f}' for t in fetchdrive_times)}")
        print(f"rate fetchdrive/aria2c: {best_aria / best_fd:.2f}x (goal >= 0.9x)")
        print(f"server memory growth (peak RSS over RSS before the transfer): {max(growths) / 2**20:.1f} MiB (goal < 100)")
        announce.shutdown()
        for seeder in seeders:
            seeder.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
