"""bench/rate_limit.py: do `engine.rate_limit` and `engine.per_user_rate_limit` hold within 10 %
over 10 s? Measured side by side with `curl --limit-rate` against the same nginx origin.

Each fetchdrive download's bytes are read from the API once at 1 s (after ramp-up) and once
at 11 s; the rate over those 10 s is compared with the configured cap.

    python bench/rate_limit.py [--limit-mib 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from support import fetchdrive_server, make_file, nginx

MiB = 2**20
WARM_UP = 1.0


def window_rates(server, users: list[str], origin: str, seconds: float) -> list[float]:
    """Start one download per user; bytes per second each made over the window."""
    sessions = [server.session(user, f"{user}-password") for user in users]
    for number, session in enumerate(sessions):
        session.put(server.dav("downloads/t.url"), data=f"[InternetShortcut]\r\nURL={origin}/file{number}.bin\r\n".encode())

    def done() -> list[int]:
        return [sum(task["bytes_done"] or 0 for task in session.get(server.url("/api/v1/tasks")).json())
                for session in sessions]

    time.sleep(WARM_UP)
    began, first = time.monotonic(), done()
    time.sleep(seconds)
    elapsed, last = time.monotonic() - began, done()
    return [(after - before) / elapsed for before, after in zip(first, last)]


def curl_rate(url: str, limit: int, seconds: float) -> float:
    """curl --limit-rate for the same window: bytes per second it reports."""
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "--limit-rate", str(limit), "--max-time", str(WARM_UP + seconds),
         "-w", "%{size_download} %{time_total}", url],
        capture_output=True, text=True,
    )
    size, total = (float(value) for value in re.findall(r"[\d.]+", result.stdout)[:2])
    return size / total


def report(label: str, measured: float, cap: float, reference: float | None = None) -> None:
    deviation = 100 * (measured - cap) / cap
    line = f"  {label:42s} {measured / MiB:7.2f} MiB/s  cap {cap / MiB:6.2f}  deviation {deviation:+5.1f} %"
    if reference is not None:
        line += f"  (curl --limit-rate: {reference / MiB:6.2f} MiB/s, {100 * (reference - cap) / cap:+5.1f} %)"
    print(line, "ok" if abs(deviation) <= 10 else "OVER 10 %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-mib", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed: apt-get install curl")
    limit = int(args.limit_mib * MiB)
    size = int(limit * (args.seconds + 5) * 2)  # never finishes inside the window
    work = Path(tempfile.mkdtemp(prefix="bench-rate-"))
    try:
        (work / "www").mkdir()
        make_file(work / "www" / "file0.bin", size)
        (work / "www" / "file1.bin").hardlink_to(work / "www" / "file0.bin")
        with nginx(work / "www") as origin:
            print(f"rates over {args.seconds:.0f} s after {WARM_UP:.0f} s of ramp-up")
            reference = curl_rate(f"{origin}/file0.bin", limit, args.seconds)

            server = fetchdrive_server(work / "global", {"engine.rate_limit": limit, "engine.connections_per_task": 4})
            server.add_user("one", "one-password", quota="none")
            report("engine.rate_limit, one download", window_rates(server, ["one"], origin, args.seconds)[0], limit, reference)
            server.stop()

            server = fetchdrive_server(work / "split", {"engine.rate_limit": limit, "engine.connections_per_task": 4})
            for user in ("one", "two"):
                server.add_user(user, f"{user}-password", quota="none")
            rates = window_rates(server, ["one", "two"], origin, args.seconds)
            report("engine.rate_limit, two users together", sum(rates), limit)
            server.stop()

            per_user = limit // 2
            server = fetchdrive_server(work / "per-user", {"engine.per_user_rate_limit": per_user,
                                                           "engine.connections_per_task": 4})
            for user in ("one", "two"):
                server.add_user(user, f"{user}-password", quota="none")
            for user, rate in zip(("one", "two"), window_rates(server, ["one", "two"], origin, args.seconds)):
                report(f"engine.per_user_rate_limit, user {user}", rate, per_user)
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
