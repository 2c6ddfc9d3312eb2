"""bench/dav.py: the drive itself (WebDAV) against plain WsgiDAV and nginx, in one run.

1. Small-file GET (4 KiB), `wrk -t2 -c8`: fetchdrive (Basic auth on every request) vs plain
   WsgiDAV serving the same files with its FilesystemProvider on cheroot (anonymous, same
   50 threads as fetchdrive's default `server.threads`, logging off in both).
   Goal: at least 1.0x WsgiDAV's requests/s.
2. PROPFIND Depth 1, allprop, on a folder of 1,000 small files (a wrk Lua script sets the
   method, `Depth: 1` and the body): the same pair, the same folder contents.
   Goal: at least 3.0x WsgiDAV's requests/s.
   Each wrk figure is the best of two runs per side, the servers taking turns.
3. GET and PUT of one large file (1 GiB) with curl: fetchdrive vs nginx's WebDAV module
   (`dav_methods PUT DELETE`, `client_max_body_size 0`, sendfile on). Best of three rounds
   each, the two servers taking turns (and turns going first for PUT); before each PUT a
   `sync`, and the previous upload is deleted right after its check, so that neither pays for
   the other's writeback or memory; the PUT's source file in /dev/shm.
   Goal: at most 1.2x nginx's time. On a machine whose disk makes large writes noisy, run
   with TMPDIR=/dev/shm as well: both servers then store in memory, which compares the
   servers rather than the disk.

fetchdrive's resident memory (VmRSS) is printed after the setup and after each step,
with its peak (VmHWM). Everything runs on loopback; the figures of both sides come from
the same run, so the ratios are what to compare between machines.

    python bench/dav.py [--seconds 10] [--size-mib 1024] [--entries 1000] [--wrk-rounds 2] [--rounds 3]
                        [--only small|large]

A quick run: `python bench/dav.py --seconds 2 --size-mib 64`. Its PROPFIND ratio flatters
fetchdrive: WsgiDAV's 8 concurrent listings take about a second and finish together, so a
window of a few seconds catches few of them; the figure is fair from about 10 s on.
Needs wrk, curl and nginx (apt-get install wrk curl nginx).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from support import current_rss, fetchdrive_server, free_port, make_file, nginx, peak_rss, timed

USER, PASSWORD = "bench", "bench-password"
SMALL_SIZE = 4096
THREADS = 50  # fetchdrive's default server.threads; plain WsgiDAV gets the same
MiB = 2**20

# Plain WsgiDAV as `wsgidav --auth anonymous --server cheroot` runs it, minus the per-request
# log lines, with fetchdrive's thread count. Arguments: root folder, port, threads.
PLAIN_WSGIDAV = textwrap.dedent("""
    import logging, sys
    from cheroot import wsgi
    from wsgidav.wsgidav_app import WsgiDAVApp
    root, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = WsgiDAVApp({
        "provider_mapping": {"/dav": root},
        "simple_dc": {"user_mapping": {"*": True}},
        "verbose": 1,
        "logging": {"enable": False},
    })
    logging.getLogger("wsgidav").setLevel(logging.ERROR)
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=threads, server_name="wsgidav")
    server.start()
""")

PROPFIND_BODY = '<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
PROPFIND_LUA = textwrap.dedent(f"""
    wrk.method = "PROPFIND"
    wrk.headers["Depth"] = "1"
    wrk.headers["Content-Type"] = "application/xml; charset=utf-8"
    wrk.body = '{PROPFIND_BODY}'
""")


# ---------------------------------------------------------------------------------------
# Servers


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:.0f} s")


def stop_process(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def plain_wsgidav(root: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Plain WsgiDAV (FilesystemProvider, cheroot, anonymous) serving `root` at /dav/."""
    port = free_port()
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-c", PLAIN_WSGIDAV, str(root), str(port), str(THREADS)],
                                   stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process, "plain WsgiDAV")
        yield f"http://127.0.0.1:{port}/dav", process
    finally:
        stop_process(process)


@contextmanager
def nginx_dav(work: Path) -> Iterator[tuple[str, Path]]:
    """nginx with its WebDAV module (PUT, DELETE) on a loopback port; yields (base URL, root)."""
    root = work / "nginx-www"
    root.mkdir()
    root.chmod(0o777)  # nginx workers run unprivileged and must write PUT bodies here
    with nginx(root, "location / { dav_methods PUT DELETE; client_max_body_size 0; }") as origin:
        yield origin, root


# ---------------------------------------------------------------------------------------
# Content and checks


def folder_contents(entries: int) -> dict[str, bytes]:
    """Relative path -> bytes: the small file and a folder of `entries` small files."""
    rng = random.Random(1)
    files = {"small.bin": os.urandom(SMALL_SIZE)}
    for number in range(entries):
        files[f"folder/document-{number:04}.txt"] = rng.randbytes(rng.randrange(100, 20_000))
    return files


def write_contents(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def check_served(base: str, session: requests.Session, small: bytes, entries: int) -> int:
    """Both servers must answer alike before being timed; returns the PROPFIND answer's size."""
    got = session.get(f"{base}/small.bin")
    if got.status_code != 200 or got.content != small:
        raise SystemExit(f"GET {base}/small.bin: {got.status_code}, {len(got.content)} bytes")
    listing = session.request("PROPFIND", f"{base}/folder/", data=PROPFIND_BODY,
                              headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
    if listing.status_code != 207:
        raise SystemExit(f"PROPFIND {base}/folder/: {listing.status_code}")
    responses = len(ElementTree.fromstring(listing.content).findall("{DAV:}response"))
    if responses != entries + 1:
        raise SystemExit(f"PROPFIND {base}/folder/: {responses} entries, expected {entries + 1}")
    return len(listing.content)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: list[int], quiet: float = 0.3, timeout: float = 120) -> None:
    """Wait until the servers have finished work wrk walked away from (requests in flight when
    its time was up), so that it does not eat into the next measurement."""
    deadline = time.monotonic() + timeout
    before = [cpu_seconds(pid) for pid in pids]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        after = [cpu_seconds(pid) for pid in pids]
        if all(b - a < 0.02 for a, b in zip(before, after)):
            return
        before = after
    raise SystemExit("the servers stayed busy after wrk stopped")


def wrk(url: str, headers: dict[str, str], seconds: float, script: Path | None = None) -> float:
    """Requests per second of `wrk -t2 -c8`; stops the run on any error response."""
    command = ["wrk", "-t2", "-c8", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    for problem in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        found = re.search(problem, output)
        if found:
            raise SystemExit(f"wrk against {url} saw errors ({found.group(0)}):\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def wrk_pair(servers: list[int], seconds: float, rounds: int, reference: tuple[str, dict[str, str]],
             ours: tuple[str, dict[str, str]], script: Path | None = None) -> tuple[float, float, str]:
    """Best requests/s of each side over `rounds` alternating wrk runs (other work on the
    machine costs both sides alike), and every round as text."""
    results: list[tuple[float, float]] = []
    for _ in range(rounds):
        wait_idle(servers)
        first = wrk(*reference, seconds, script)
        wait_idle(servers)
        second = wrk(*ours, seconds, script)
        results.append((first, second))
    wait_idle(servers)
    text = "    rounds (WsgiDAV / fetchdrive): " + "  ".join(f"{a:,.1f} / {b:,.1f}" for a, b in results)
    return max(a for a, _ in results), max(b for _, b in results), text


def curl(args: list[str]) -> float:
    """Seconds one curl transfer takes; fails on any HTTP error."""
    return timed(lambda: subprocess.run(["curl", "-sSf", "-o", "/dev/null", *args], check=True))


# ---------------------------------------------------------------------------------------
# Report


def row(what: str, reference: str, ours: str, ratio: float | None = None, goal: str = "") -> None:
    ratio_text = f"{ratio:6.2f}x" if ratio is not None else ""
    print(f"  {what:38s} {reference:>22s} {ours:>16s} {ratio_text:>8s}   {goal}", flush=True)


def memory(pid: int) -> str:
    return f"{current_rss(pid) / MiB:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="duration of each wrk run (default 10)")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the large GET/PUT file (default 1024)")
    parser.add_argument("--entries", type=int, default=1000, help="files in the PROPFIND folder (default 1000)")
    parser.add_argument("--wrk-rounds", type=int, default=2,
                        help="wrk runs per side, alternating, best kept (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="curl rounds per large transfer, best kept (default 3)")
    parser.add_argument("--only", choices=("small", "large"),
                        help="run only the wrk part (small GET, PROPFIND) or only the large GET/PUT")
    args = parser.parse_args()
    for tool in ("wrk", "curl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is not installed: apt-get install {tool}")

    work = Path(tempfile.mkdtemp(prefix="bench-dav-"))
    cleanup: list[Path] = []
    server = None
    try:
        server = fetchdrive_server(work / "fetchdrive", {"server.threads": THREADS})
        pid = server.process.pid
        ours = server.dav().rstrip("/")
        auth_header = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
        ours_session = server.session(USER, PASSWORD)
        files = folder_contents(args.entries)
        write_contents(server.space(USER), files)
        script = work / "propfind.lua"
        script.write_text(PROPFIND_LUA)
        plain_root = work / "plain"
        write_contents(plain_root, files)
        plain_session = requests.Session()
        plain_session.trust_env = False

        memory_at_start = current_rss(pid)
        if args.only in (None, "small"):
            with plain_wsgidav(plain_root, work / "plain-wsgidav.log") as (plain, plain_process):
                size_plain = check_served(plain, plain_session, files["small.bin"], args.entries)
                size_ours = check_served(ours, ours_session, files["small.bin"], args.entries)
                ours_session.close()
                plain_session.close()
                seconds = max(1, round(args.seconds))
                print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
                      "(other work on the machine makes the figures noisy)")
                print(f"wrk -t2 -c8 -d{seconds}s, best of {args.wrk_rounds} per side; plain WsgiDAV: FilesystemProvider "
                      f"on cheroot, anonymous, {THREADS} threads; fetchdrive: Basic auth, {THREADS} threads")
                print(f"  fetchdrive memory after start and setup: {memory(pid)}")
                row("what", "reference", "fetchdrive", None, "goal")

                servers = [plain_process.pid, pid]
                # Short warm-ups, so neither side pays first-request costs in the timed runs
                # (check_served listed the folder once on each side already).
                for url, headers in ((f"{plain}/small.bin", {}), (f"{ours}/small.bin", auth_header)):
                    wrk(url, headers, 1)
                reference, measured, rounds = wrk_pair(servers, args.seconds, args.wrk_rounds,
                                                       (f"{plain}/small.bin", {}), (f"{ours}/small.bin", auth_header))
                row("GET 4 KiB (requests/s)", f"WsgiDAV {reference:,.0f}", f"{measured:,.0f}",
                    measured / reference, ">= 1.0x")
                print(rounds)
                print(f"  fetchdrive memory after the GETs: {memory(pid)}")

                reference, measured, rounds = wrk_pair(servers, args.seconds, args.wrk_rounds,
                                                       (f"{plain}/folder/", {}), (f"{ours}/folder/", auth_header), script)
                row(f"PROPFIND Depth 1, {args.entries:,} entries (/s)", f"WsgiDAV {reference:,.1f}", f"{measured:,.1f}",
                    measured / reference, ">= 3.0x")
                print(rounds)
                print(f"  answer size: WsgiDAV {size_plain / 1024:.0f} KiB, fetchdrive {size_ours / 1024:.0f} KiB; "
                      f"plain WsgiDAV's memory: {memory(plain_process.pid)}")
                print(f"  fetchdrive memory after the PROPFINDs: {memory(pid)}")

        if args.only in (None, "large"):
            size = args.size_mib * MiB
            # The upload's source lives in memory where it can (tmpfs cannot be evicted), so
            # neither side waits for curl reading it back from disk.
            in_memory = Path("/dev/shm")
            upload = make_file((in_memory if in_memory.is_dir() else work) / f"bench-dav-upload-{os.getpid()}.bin", size)
            cleanup.append(upload)
            with nginx_dav(work) as (origin, nginx_root):
                shutil.copyfile(upload, nginx_root / "large.bin")
                shutil.copyfile(upload, server.space(USER) / "large.bin")
                credentials = ["-u", f"{USER}:{PASSWORD}"]
                curl([f"{origin}/large.bin"])  # both copies into the page cache, as the upload already is
                curl([*credentials, f"{ours}/large.bin"])
                nginx_get, ours_get, nginx_put, ours_put = [], [], [], []
                for _ in range(args.rounds):
                    nginx_get.append(curl([f"{origin}/large.bin"]))
                    ours_get.append(curl([*credentials, f"{ours}/large.bin"]))
                for number in range(args.rounds):
                    name = f"put-{number}.bin"
                    puts = [(nginx_put, [], origin, nginx_root), (ours_put, credentials, ours, server.space(USER))]
                    for times, auth, base, root in puts if number % 2 == 0 else reversed(puts):  # taking turns
                        # Each PUT starts with no dirty pages and no cached copy left by the one
                        # before: on this VM, writeback of the previous gigabyte, or memory the
                        # kernel has not handed out for a while, otherwise decides the time.
                        os.sync()
                        times.append(curl([*auth, "-T", str(upload), f"{base}/{name}"]))
                        if (root / name).stat().st_size != size:
                            raise SystemExit(f"PUT stored {(root / name).stat().st_size} bytes in {root / name}, not {size}")
                        subprocess.run(["curl", "-sSf", "-o", "/dev/null", *auth, "-X", "DELETE", f"{base}/{name}"],
                                       check=True)
            print(f"curl, {args.size_mib:,} MiB, best of {args.rounds} (all rounds in s: nginx / fetchdrive)")
            for what, reference_times, our_times in (("GET", nginx_get, ours_get), ("PUT", nginx_put, ours_put)):
                reference, measured = min(reference_times), min(our_times)
                row(f"{what} {args.size_mib:,} MiB (s)", f"nginx {reference:.2f}", f"{measured:.2f}",
                    measured / reference, "<= 1.2x")
                print(f"    {what} rounds: " + " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(reference_times, our_times))
                      + f"  ({size / measured / MiB:,.0f} MiB/s for fetchdrive)")
        growth = (current_rss(pid) - memory_at_start) / MiB
        print(f"  fetchdrive memory at the end: {memory(pid)} ({growth:+.0f} MiB over the run), "
              f"peak {peak_rss(pid) / MiB:.0f} MiB")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
        for path in cleanup:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
