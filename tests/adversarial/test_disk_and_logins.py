"""A nearly full disk (a threshold above the free space, and a real 64 MiB filesystem), and a
burst of wrong passwords."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.downloads_helpers import small_tmpfs, temp_downloads, wait_for
from tests.server_process import ServerProcess


def test_below_min_free_uploads_get_507_and_downloads_pause_until_space_returns(make_server, origin, tally):
    server = make_server(settings={"storage.min_free": "1000T"})
    server.add_user("full", "full-password")
    session = server.session("full", "full-password")
    response = session.put(server.dav("f.bin"), data=b"x" * 1000)
    tally["requests made"] += 1
    assert response.status_code == 507 and "storage.min_free" in response.text
    assert not (server.space("full") / "f.bin").exists()
    origin.add("/wait.bin", b"w" * 100_000)
    # A trigger upload would get 507 too; the API still takes the intent.
    assert session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/wait.bin")}).status_code == 201
    task = wait_for(lambda: [t for t in session.get(server.url("/api/v1/tasks")).json() if t["state"] == "waiting"],
                    message="a waiting task")[0]
    assert "disk is almost full" in task["error"]
    assert origin.count("/wait.bin") == 0
    server.stop()
    server.config_path.write_text(server.config_path.read_text().replace("1000T", "1M"))
    server.start()
    path = server.space("full") / "downloads" / "wait.bin"
    wait_for(path.exists, timeout=30, message="the download after space returned")
    tally["files checked"] += 1


@pytest.fixture
def small_disk_server(tmp_path):
    """A server whose whole storage root is a 64 MiB tmpfs, with storage.min_free 16M."""
    server = ServerProcess(tmp_path / "small", {"storage.min_free": "16M"})
    with small_tmpfs(server.data, "64m"):
        try:
            yield server.start()
        finally:
            server.stop()


def test_a_really_full_small_disk_refuses_uploads_and_pauses_downloads_until_space_returns(
        small_disk_server, origin, tally):
    server = small_disk_server
    server.add_user("small", "small-password", quota="none")
    session = server.session("small", "small-password")
    ballast = server.data / "ballast.bin"
    ballast.write_bytes(b"\0" * 52 * 1024 * 1024)  # leaves about 12 MiB, less than storage.min_free
    response = session.put(server.dav("f.bin"), data=b"x" * 100_000)
    tally["requests made"] += 1
    assert response.status_code == 507 and "storage.min_free" in response.text
    assert not (server.space("small") / "f.bin").exists()
    body = b"d" * 2_000_000
    origin.add("/paused.bin", body)
    assert session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/paused.bin")}).status_code == 201
    task = wait_for(lambda: [t for t in session.get(server.url("/api/v1/tasks")).json() if t["state"] == "waiting"],
                    message="a waiting task")[0]
    assert "disk is almost full" in task["error"]
    ballast.unlink()  # space returns, with no restart
    path = server.space("small") / "downloads" / "paused.bin"
    wait_for(path.exists, timeout=60, message="the download once space returned")
    assert path.read_bytes() == body
    assert session.put(server.dav("f.bin"), data=b"x" * 100_000).status_code == 201
    wait_for(lambda: not temp_downloads(server.data), message="no temporary data left")
    tally["files checked"] += 2


def test_a_burst_of_1000_wrong_passwords_is_throttled_and_others_still_get_in(server, alice, bob, tally):
    def attempt(number: int) -> int:
        return requests.get(server.dav(), auth=("alice", f"guess-{number}"), timeout=30).status_code

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(attempt, range(1000)))
    tally["requests made"] += 1000
    tally["hostile inputs tried"] += 1000
    assert set(statuses) == {401, 429}
    assert time.monotonic() - began < 60
    assert requests.get(server.dav(), auth=("alice", alice.password)).status_code == 429  # still locked out
    assert bob.session.get(server.dav()).status_code == 200
    log = server.log_text()
    assert "too many wrong passwords" in log and "guess-" not in log
