"""bench/instant.py: time from trigger upload to visible file for content already in the
store (instant delivery), against the time of the first real download of it.
Goal: instant delivery under 0.2 s for a 1 GiB file.

A download is published before its SHA-256 is complete (the hash catches up afterwards), so
the script waits for the first task's digest before asking again, and reports how long
after the file appeared the digest was known. The `sha256:` ID is served by a mirror (the
same nginx), which must confirm it before the store delivers it (SPEC 5).

    python bench/instant.py [--size-mib 1024]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
from pathlib import Path

from support import fetchdrive_server, make_file, nginx, timed, wait_until


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-instant-"))
    try:
        (work / "www").mkdir()
        source = make_file(work / "www" / "big.bin", args.size_mib * 1024 * 1024)
        digest = hashlib.file_digest(open(source, "rb"), "sha256").hexdigest()
        (work / "www" / digest).hardlink_to(source)
        with nginx(work / "www") as origin:
            server = fetchdrive_server(work / "fetchdrive", {"engine.mirrors": [f"{origin}/{{sha256}}"]})
            server.add_user("second", "second-password", quota="none")
            first_user = server.session("bench", "bench-password")
            second_user = server.session("second", "second-password")

            def deliver(session, user: str, trigger: str, content: str, name: str) -> None:
                session.put(server.dav(f"downloads/{trigger}"), data=content.encode())
                wait_until(lambda: (server.space(user) / "downloads" / name).exists(), poll=0.002)

            url_trigger = f"[InternetShortcut]\r\nURL={origin}/big.bin\r\n"
            first = timed(lambda: deliver(first_user, "bench", "a.url", url_trigger, "big.bin"))
            hashed = timed(lambda: wait_until(lambda: first_user.get(server.url("/api/v1/tasks")).json()[0]["sha256"]))
            by_url = timed(lambda: deliver(second_user, "second", "a.url", url_trigger, "big.bin"))
            by_hash = timed(lambda: deliver(second_user, "second", "b.id", f"sha256:{digest}\nfilename=again.bin\n", "again.bin"))
            server.stop()
        print(f"file: {args.size_mib} MiB")
        print(f"first real download:             {first:7.3f} s   (its sha256 known {hashed:.3f} s later)")
        print(f"same URL again (conditional GET): {by_url:7.3f} s   ratio {by_url / first:.4f}")
        print(f"sha256: ID held, mirror confirms: {by_hash:7.3f} s   ratio {by_hash / first:.4f} (goal < 0.2 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
