"""Starting and stopping `fetchdrive serve` (the test suite does it some 400 times): a stop ends
gracefully whatever the listener and its connections, and a plain server's run loads none of
the modules that only other features or commands need."""

from __future__ import annotations

import re
import signal
import socket

import pytest

from tests.server_process import ADMIN_PASSWORD, ServerProcess


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


LISTENERS = ["127.0.0.1", "localhost"] + (["::1"] if _ipv6_loopback() else [])


@pytest.mark.parametrize("host", LISTENERS)
def test_sigterm_stops_the_server_gracefully_with_connections_open(tmp_path, host):
    """A server holding a kept-alive client, a silent one and one halfway through a request head
    exits with status 0 (not killed by ServerProcess.stop's deadline), says so, and logs no
    traceback."""
    server = ServerProcess(tmp_path / "server", {"server.host": host}).start()
    try:
        kept_alive = server.session("admin", ADMIN_PASSWORD)
        assert kept_alive.get(server.url("/api/v1/me")).status_code == 200
        address = (host, int(server.base_url.rsplit(":", 1)[1]))
        silent = socket.create_connection(address)
        halfway = socket.create_connection(address)
        halfway.sendall(b"GET /dav/ HTTP/1.1\r\nHost: x\r\n")
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
        silent.close()
        halfway.close()
        log = server.log_text()
        assert "received SIGTERM, shutting down" in log and log.rstrip().endswith("stopped"), log[-2000:]
        assert "Traceback" not in log
    finally:
        server.stop()


# What loads these: PostgreSQL drives, the `add` and `sync` commands, notifications.
ONLY_FOR_OTHER_FEATURES = ["psycopg", "psycopg_pool", "webdav3", "tqdm", "apprise"]


def test_a_plain_server_run_imports_no_module_only_other_features_need(tmp_path, monkeypatch):
    """PYTHONPROFILEIMPORTTIME makes the server log every module it imports, from its start
    through a login, a listing, an upload and its stop (in a process of its own: a forked
    server would have them all from the helper that forked it)."""
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    server = ServerProcess(tmp_path / "server", forked=False).start()
    try:
        admin = server.session("admin", ADMIN_PASSWORD)
        assert admin.put(server.dav("notes.txt"), data=b"hello").status_code == 201
        assert admin.request("PROPFIND", server.dav(), headers={"Depth": "1"}).status_code == 207
        assert admin.get(server.url("/api/v1/tasks")).status_code == 200
    finally:
        server.stop()
    imported = set(re.findall(r"^import time:.*\|\s*([\w.]+)$", server.log_text(), re.M))
    assert "wsgidav" in imported  # the log does name the imports
    loaded = sorted(name for name in imported if name.split(".")[0] in ONLY_FOR_OTHER_FEATURES)
    assert loaded == []
