"""Shared pieces of the benchmarks: an nginx origin on loopback, a fetchdrive server, the
WebDAV servers fetchdrive is compared with (copyparty, rclone serve webdav), timing.

Every benchmark runs the reference tool and fetchdrive side by side in one run on this
machine and prints both figures with their ratio.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server_process import ServerProcess  # noqa: E402  (reused: starts the real server)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_file(path: Path, size: int) -> Path:
    """A file of `size` pseudo-random bytes (not compressible, not sparse)."""
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as out:
        written = 0
        while written < size:
            step = min(len(block), size - written)
            out.write(block[:step])
            written += step
    return path


@contextmanager
def nginx(root: Path, extra_location: str = "") -> Iterator[str]:
    """nginx serving `root` on a loopback port; yields its base URL."""
    if not Path(NGINX).exists():
        raise SystemExit("nginx is not installed: apt-get install nginx")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    work.chmod(0o755)  # nginx workers write request bodies under it
    # nginx workers drop to an unprivileged user: let them read what they serve.
    for folder in [root, *root.parents]:
        if folder != Path("/"):
            folder.chmod(folder.stat().st_mode | 0o055)
    conf = work / "nginx.conf"
    conf.write_text(f"""
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        {extra_location}
    }}
}}
""")
    process = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(work, ignore_errors=True)


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
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
def started(command: list[str], what: str, port: int, log: Path) -> Iterator[subprocess.Popen]:
    """A server process listening on `port`; stopped on leaving, or at exit at the latest."""
    with open(log, "wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    atexit.register(stop_process, process)
    try:
        wait_for_port(port, process, what)
        yield process
    finally:
        stop_process(process)


@contextmanager
def copyparty(root: Path, user: str, password: str, work: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """copyparty (PyPI `copyparty`) serving `root` read-write to `user` only, Basic auth, on
    loopback; its database and thumbnails off, its state folder outside `root`. Yields
    (base URL, process)."""
    port = free_port()
    command = [sys.executable, "-m", "copyparty", "-p", str(port), "-i", "127.0.0.1", "-q",
               "-a", f"{user}:{password}", "-v", f"{root}::rw,{user}", "--hist", str(work / "copyparty-hist"),
               "--http-only", "--no-crt", "--no-thumb", "--dav-auth", "--no-logues", "--no-readme"]
    with started(command, "copyparty", port, work / "copyparty.log") as process:
        yield f"http://127.0.0.1:{port}", process


@contextmanager
def rclone_webdav(root: Path, user: str, password: str, work: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`rclone serve webdav` (Debian `rclone`) serving `root` with Basic auth on loopback."""
    if not shutil.which("rclone"):
        raise SystemExit("rclone is not installed: apt-get install rclone")
    port = free_port()
    command = ["rclone", "serve", "webdav", "--config", "/dev/null", "--addr", f"127.0.0.1:{port}",
               "--user", user, "--pass", password, str(root)]
    with started(command, "rclone serve webdav", port, work / "rclone.log") as process:
        yield f"http://127.0.0.1:{port}", process


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def peak_rss(pid: int) -> int:
    """Peak resident memory of a process (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def current_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def fetchdrive_server(base: Path, settings: dict | None = None) -> ServerProcess:
    """A started server with the user `bench`; stopped at exit at the latest, even when a
    benchmark fails halfway (a forgotten server would skew every later figure)."""
    server = ServerProcess(base, {"engine.allow_private_networks": True, "storage.min_free": "100M", **(settings or {})})
    atexit.register(server.stop)
    server.start()
    server.add_user("bench", "bench-password", quota="none")
    return server


def wait_until(check: Callable[[], bool], timeout: float = 600, poll: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(poll)
