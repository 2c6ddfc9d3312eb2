"""200 idle or trickling connections (over HTTP and HTTPS) do not stop other users being served,
and a client that never finishes its request head is cut off after `server.header_timeout`."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

SLOW_CLIENTS = 200
HEADER_TIMEOUT = 3


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, check=True,
    )
    return cert, key


def _trickle(connection: socket.socket, stop: threading.Event) -> None:
    """Send a request head one byte every half second, never finishing it."""
    for byte in b"PROPFIND /dav/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 10_000:
        if stop.wait(0.5):
            return
        try:
            connection.send(bytes([byte]))
        except OSError:
            return


def _closed_by_server(connection: socket.socket, within: float) -> bool:
    connection.settimeout(within)
    try:
        while connection.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass  # reset: closed as well
    return True


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_idle_and_trickling_connections_do_not_stop_other_users(make_server, tmp_path, tally, scheme):
    settings = {"server.threads": 10, "server.header_timeout": HEADER_TIMEOUT}
    if scheme == "https":
        cert, key = _certificate(tmp_path)
        settings |= {"server.tls.cert": str(cert), "server.tls.key": str(key)}
    server = make_server(settings=settings)
    server.add_user("busy", "busy-password")
    session = server.session("busy", "busy-password")
    session.verify = str(cert) if scheme == "https" else True
    address = urlsplit(server.base_url)
    stop = threading.Event()
    connections = [socket.create_connection((address.hostname, address.port)) for _ in range(SLOW_CLIENTS)]
    tricklers = [threading.Thread(target=_trickle, args=(connection, stop)) for connection in connections[::2]]
    try:
        for thread in tricklers:
            thread.start()
        time.sleep(1)
        for number in range(30):
            body = f"file {number}".encode()
            assert session.put(server.dav(f"f{number}.txt"), data=body, timeout=10).status_code == 201
            assert session.get(server.dav(f"f{number}.txt"), timeout=10).content == body
            assert session.request("PROPFIND", server.dav(), headers={"Depth": "1"}, timeout=10).status_code == 207
            tally["requests made"] += 3
            tally["files checked"] += 1
        # A trickler never finishes its head: the server cuts it off, freeing its worker.
        assert _closed_by_server(connections[0], HEADER_TIMEOUT + 10)
    finally:
        stop.set()
        for thread in tricklers:
            thread.join()
        for connection in connections:
            connection.close()
    assert session.get(server.url("/api/v1/me"), timeout=10).status_code == 200
