"""bench/dav.py: the drive itself (WebDAV) against what people would run instead, in one run.

1. Small-file GET (4 KiB), `wrk -t2 -c8`, and PROPFIND Depth 1, allprop, on a folder of
   1,000 small files (a wrk Lua script sets the method, `Depth: 1` and the body). Servers,
   all on loopback, serving the same files, taking turns (the first to go rotates), best of
   `--wrk-rounds` per server, every round printed:
   - fetchdrive (Basic auth checked on every request, 50 threads);
   - plain WsgiDAV: its FilesystemProvider on cheroot (anonymous, 50 threads, logging off);
   - copyparty (PyPI `copyparty`; Basic auth, its database, thumbnails and announcements off);
   - `rclone serve webdav` (Debian `rclone`; Basic auth).
   Goals: GET at least 1.0x WsgiDAV and 1.0x copyparty, PROPFIND at least 3.0x WsgiDAV and
   1.0x copyparty; stretch goal 1.0x rclone for both.
2. Latency: p50 and p99 of the same GET and PROPFIND with 50 concurrent clients
   (`wrk -c50 --latency`), each server in turn.
3. PROPFIND Depth 1 of a folder of 10,000 entries (`--big-entries`), one client: time to
   the first byte of the answer, total time, and how far the server's memory rose meanwhile
   (resident memory sampled every 5 ms), best of the rounds.
4. GET and PUT of one large file (1 GiB) with curl: fetchdrive vs nginx's WebDAV module
   (`dav_methods PUT DELETE`, `client_max_body_size 0`, sendfile on). Best of three rounds
   each, the two servers taking turns (and turns going first for PUT); before each PUT a
   `sync`, and the previous upload is deleted right after its check, so that neither pays for
   the other's writeback or memory; the PUT's source file in /dev/shm.
   Goal: at most 1.2x nginx's time. On a machine whose disk makes large writes noisy, run
   with TMPDIR=/dev/shm as well: both servers then store in memory, which compares the
   servers rather than the disk.

fetchdrive's resident memory (VmRSS) is printed after the setup and after each step,
with its peak (VmHWM). Everything runs on loopback; the figures of all sides come from
the same run, so the ratios are what to compare between machines.

    python bench/dav.py [--seconds 10] [--size-mib 1024] [--entries 1000] [--big-entries 10000]
                        [--wrk-rounds 3] [--rounds 3] [--only small|large]

A quick run: `python bench/dav.py --seconds 2 --size-mib 64 --big-entries 2000`. Its
PROPFIND ratio against WsgiDAV flatters fetchdrive: WsgiDAV's 8 concurrent listings take
about a second and finish together, so a window of a few seconds catches few of them; the
figure is fair from about 10 s on.
Needs wrk, curl, nginx and rclone (apt-get install wrk curl nginx rclone) and copyparty
(pip install copyparty).
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit

import requests

from support import (copyparty, current_rss, fetchdrive_server, free_port, make_file, nginx, peak_rss, rclone_webdav,
                     started, timed)

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


@contextmanager
def plain_wsgidav(root: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """Plain WsgiDAV (FilesystemProvider, cheroot, anonymous) serving `root` at /dav/."""
    port = free_port()
    with started([sys.executable, "-c", PLAIN_WSGIDAV, str(root), str(port), str(THREADS)],
                 "plain WsgiDAV", port, log) as process:
        yield f"http://127.0.0.1:{port}/dav", process


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


def folder_contents(entries: int, big_entries: int) -> dict[str, bytes]:
    """Relative path -> bytes: the small file, a folder of `entries` small files and one of
    `big_entries` tiny ones."""
    rng = random.Random(1)
    files = {"small.bin": os.urandom(SMALL_SIZE)}
    for number in range(entries):
        files[f"folder/document-{number:04}.txt"] = rng.randbytes(rng.randrange(100, 20_000))
    for number in range(big_entries):
        files[f"big/entry-{number:06}.txt"] = b"%d" % number
    return files


def write_contents(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


@dataclass
class Served:
    """One server under test: its name, /dav/ base URL (no trailing slash), request headers
    (its Basic credentials) and process id."""

    name: str
    base: str
    headers: dict[str, str]
    pid: int


def check_served(server: Served, small: bytes, folders: dict[str, int]) -> dict[str, int]:
    """Every server must answer alike before being timed; returns each listing's size."""
    session = requests.Session()
    session.trust_env = False
    session.headers.update(server.headers)
    got = session.get(f"{server.base}/small.bin")
    if got.status_code != 200 or got.content != small:
        raise SystemExit(f"GET {server.base}/small.bin: {got.status_code}, {len(got.content)} bytes")
    sizes = {}
    for folder, entries in folders.items():
        listing = session.request("PROPFIND", f"{server.base}/{folder}/", data=PROPFIND_BODY,
                                  headers={"Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        if listing.status_code != 207:
            raise SystemExit(f"PROPFIND {server.base}/{folder}/: {listing.status_code}")
        responses = len(ElementTree.fromstring(listing.content).findall("{DAV:}response"))
        if responses != entries + 1:
            raise SystemExit(f"PROPFIND {server.base}/{folder}/: {responses} entries, expected {entries + 1}")
        sizes[folder] = len(listing.content)
    session.close()
    return sizes


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


@dataclass
class WrkResult:
    rate: float  # requests per second
    p50: float | None = None  # seconds, with --latency
    p99: float | None = None


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _latency(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE).groups()
    return float(value) * _UNITS[unit]


def wrk(url: str, headers: dict[str, str], seconds: float, script: Path | None = None,
        connections: int = 8, latency: bool = False) -> WrkResult:
    """`wrk -t2 -c<connections>`: requests per second and, with `latency`, p50 and p99;
    stops the run on any error response."""
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    if latency:
        command.append("--latency")
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    for problem in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: (.*)"):
        found = re.search(problem, output)
        if found:
            raise SystemExit(f"wrk against {url} saw errors ({found.group(0)}):\n{output}")
    result = WrkResult(float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)))
    if latency:
        result.p50, result.p99 = _latency(output, "50"), _latency(output, "99")
    return result


def wrk_turns(servers: list[Served], path: str, seconds: float, rounds: int, script: Path | None = None,
              connections: int = 8, latency: bool = False) -> dict[str, list[WrkResult]]:
    """`rounds` wrk runs per server, the servers taking turns and the first to go rotating
    (other work on the machine then costs every side alike); all results, by server name."""
    pids = [server.pid for server in servers]
    results: dict[str, list[WrkResult]] = {server.name: [] for server in servers}
    for number in range(rounds):
        for server in servers[number % len(servers):] + servers[:number % len(servers)]:
            wait_idle(pids)
            results[server.name].append(wrk(f"{server.base}/{path}", server.headers, seconds, script,
                                            connections, latency))
    wait_idle(pids)
    return results


def print_rounds(results: dict[str, list], show) -> None:
    if all(len(runs) < 2 for runs in results.values()):
        return  # the best is the only one
    for name, runs in results.items():
        print(f"    {name:>10s}: " + "  ".join(show(run) for run in runs))


def compare_rates(what: str, results: dict[str, list[WrkResult]], goals: dict[str, str]) -> None:
    """One row per reference server: best rates and fetchdrive's ratio."""
    best = {name: max(run.rate for run in runs) for name, runs in results.items()}
    for name, goal in goals.items():
        row(what, f"{name} {best[name]:,.1f}", f"{best['fetchdrive']:,.1f}", best["fetchdrive"] / best[name], goal)
    print_rounds(results, lambda run: f"{run.rate:,.1f}")


def compare_latencies(what: str, results: dict[str, list[WrkResult]]) -> None:
    """p50 and p99 per server (the lowest of its rounds), fetchdrive's first."""
    print(f"  {what}, 50 clients: p50 / p99 in ms (best round; all rounds below)")
    for name, runs in sorted(results.items(), key=lambda item: item[0] != "fetchdrive"):
        p50, p99 = min(run.p50 for run in runs), min(run.p99 for run in runs)
        print(f"    {name:>10s}: {p50 * 1e3:8.1f} / {p99 * 1e3:8.1f}")
    print_rounds(results, lambda run: f"{run.p50 * 1e3:.1f}/{run.p99 * 1e3:.1f}")


@dataclass
class Listing:
    first_byte: float  # seconds from sending the request to the status line
    total: float  # seconds to the last byte
    memory_rise: int  # bytes the server's resident memory rose above its level before


def timed_listing(server: Served, folder: str) -> Listing:
    """One PROPFIND Depth 1 over a fresh connection, the server's memory sampled meanwhile."""
    before = current_rss(server.pid)
    highest = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            highest[0] = max(highest[0], current_rss(server.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    address = urlsplit(server.base)
    connection = HTTPConnection(address.hostname, address.port, timeout=120)
    try:
        began = time.perf_counter()
        connection.request("PROPFIND", f"{address.path}/{folder}/", body=PROPFIND_BODY,
                           headers={**server.headers, "Depth": "1", "Content-Type": "application/xml; charset=utf-8"})
        response = connection.getresponse()
        first_byte = time.perf_counter() - began
        response.read()
        total = time.perf_counter() - began
    finally:
        connection.close()
        done.set()
        sampler.join()
    if response.status != 207:
        raise SystemExit(f"PROPFIND {server.base}/{folder}/: {response.status}")
    return Listing(first_byte, total, max(highest[0], current_rss(server.pid)) - before)


def compare_big_listing(servers: list[Served], folder: str, entries: int, rounds: int) -> None:
    results: dict[str, list[Listing]] = {server.name: [] for server in servers}
    pids = [server.pid for server in servers]
    for number in range(rounds):
        for server in servers[number % len(servers):] + servers[:number % len(servers)]:
            wait_idle(pids)
            results[server.name].append(timed_listing(server, folder))
    print(f"  PROPFIND Depth 1, {entries:,} entries, one client: first byte / total in s, server memory rise "
          f"(best of {rounds})")
    for name, runs in sorted(results.items(), key=lambda item: item[0] != "fetchdrive"):
        print(f"    {name:>10s}: {min(run.first_byte for run in runs):7.3f} / {min(run.total for run in runs):7.3f}"
              f"   {min(run.memory_rise for run in runs) / MiB:6.1f} MiB")
    print_rounds(results, lambda run: f"{run.first_byte:.3f}/{run.total:.3f}/{run.memory_rise / MiB:.0f}M")


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
    parser.add_argument("--big-entries", type=int, default=10_000,
                        help="files in the folder listed once per round for first byte and memory (default 10000; 0: skip)")
    parser.add_argument("--wrk-rounds", type=int, default=3,
                        help="wrk runs per server, taking turns, best kept (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="curl rounds per large transfer, best kept (default 3)")
    parser.add_argument("--only", choices=("small", "large"),
                        help="run only the wrk part (small GET, PROPFIND) or only the large GET/PUT")
    args = parser.parse_args()
    for tool in ("wrk", "curl", "rclone"):
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
        memory_at_start = current_rss(pid)
        if args.only in (None, "small"):
            files = folder_contents(args.entries, args.big_entries)
            write_contents(server.space(USER), files)
            script = work / "propfind.lua"
            script.write_text(PROPFIND_LUA)
            # WsgiDAV, copyparty and rclone serve one copy of the files (they only read it).
            peers_root = work / "peers"
            write_contents(peers_root, files)
            folders = {"folder": args.entries, **({"big": args.big_entries} if args.big_entries else {})}
            with ExitStack() as stack:
                plain, plain_process = stack.enter_context(plain_wsgidav(peers_root, work / "plain-wsgidav.log"))
                party, party_process = stack.enter_context(copyparty(peers_root, USER, PASSWORD, work))
                rclone, rclone_process = stack.enter_context(rclone_webdav(peers_root, USER, PASSWORD, work))
                servers = [
                    Served("fetchdrive", ours, auth_header, pid),
                    Served("WsgiDAV", plain, {}, plain_process.pid),
                    Served("copyparty", party, auth_header, party_process.pid),
                    Served("rclone", rclone, auth_header, rclone_process.pid),
                ]
                sizes = {server.name: check_served(server, files["small.bin"], folders) for server in servers}
                seconds = max(1, round(args.seconds))
                print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
                      "(other work on the machine makes the figures noisy; all servers run in turns in this run)")
                print(f"wrk -t2 -c8 -d{seconds}s, best of {args.wrk_rounds} per server, taking turns; plain WsgiDAV: "
                      f"FilesystemProvider on cheroot, anonymous, {THREADS} threads; fetchdrive: Basic auth, "
                      f"{THREADS} threads; copyparty and rclone serve webdav: Basic auth")
                print(f"  fetchdrive memory after start and setup: {memory(pid)}")
                row("what", "reference", "fetchdrive", None, "goal")

                # Short warm-ups, so no side pays first-request costs in the timed runs
                # (check_served listed the folders once on each side already).
                for each in servers:
                    wrk(f"{each.base}/small.bin", each.headers, 1)
                compare_rates("GET 4 KiB (requests/s)",
                              wrk_turns(servers, "small.bin", args.seconds, args.wrk_rounds),
                              {"WsgiDAV": ">= 1.0x", "copyparty": ">= 1.0x", "rclone": "stretch >= 1.0x"})
                print(f"  fetchdrive memory after the GETs: {memory(pid)}")
                compare_rates(f"PROPFIND Depth 1, {args.entries:,} entries (/s)",
                              wrk_turns(servers, "folder/", args.seconds, args.wrk_rounds, script),
                              {"WsgiDAV": ">= 3.0x", "copyparty": ">= 1.0x", "rclone": "stretch >= 1.0x"})
                print("  answer sizes: " + ", ".join(f"{name} {size['folder'] / 1024:.0f} KiB" for name, size in sizes.items()))
                print(f"  fetchdrive memory after the PROPFINDs: {memory(pid)}")

                # Latency under 50 clients; WsgiDAV, well behind on throughput already, sits out.
                busy = [each for each in servers if each.name != "WsgiDAV"]
                latency_rounds = max(1, args.wrk_rounds - 1)
                compare_latencies("GET 4 KiB", wrk_turns(busy, "small.bin", args.seconds, latency_rounds,
                                                         connections=50, latency=True))
                compare_latencies(f"PROPFIND Depth 1, {args.entries:,} entries",
                                  wrk_turns(busy, "folder/", args.seconds, latency_rounds, script,
                                            connections=50, latency=True))
                if args.big_entries:
                    compare_big_listing(servers, "big", args.big_entries, args.wrk_rounds)
                    print("  answer sizes: " + ", ".join(f"{name} {size['big'] / MiB:.1f} MiB" for name, size in sizes.items()))
                print(f"  fetchdrive memory after the listings: {memory(pid)}")

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
