"""The server's own disk failing a write during a transfer is not a network fault: the task
waits for it with a reason that says so, for as long as it takes (engine.retry.give_up_after
counts network faults only), and resumes once space returns."""

from __future__ import annotations

import errno
import os

import pytest

from engine.errors import LocalStorageError, local_storage_error
from tests.downloads_helpers import fill_disk, small_tmpfs, wait_for
from tests.server_process import ServerProcess

BODY = os.urandom(16 * 1024 * 1024)


@pytest.mark.parametrize("number, local", [
    (errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EROFS, True), (errno.EIO, True),
    (errno.ECONNRESET, False), (errno.ETIMEDOUT, False), (errno.EPIPE, False), (errno.ECONNREFUSED, False),
    (errno.EHOSTUNREACH, False), (None, False),
])
def test_only_errors_of_a_local_file_count_as_local_storage_faults(number, local):
    error = OSError(number, os.strerror(number) if number else "no errno", "/srv/fetchdrive/tmp/downloads/7.part")
    found = local_storage_error(error)
    assert (found is not None) is local
    if found is not None:  # a sentence for the user, without the server's paths
        assert isinstance(found, LocalStorageError) and "server's" in str(found) and "/srv" not in str(found)


@pytest.fixture
def small_disk(tmp_path, request):
    """A server whose data folder is a 64 MiB tmpfs, fetching with `request.param` connections
    per task. Its database lives outside (a symlink, which SQLite resolves) so that what fills up
    is the download's: a full database is another fault."""
    settings = {"engine.retry.give_up_after": 1, "engine.connections_per_task": request.param}
    server = ServerProcess(tmp_path / "small", settings)
    (tmp_path / "database").mkdir()
    with small_tmpfs(server.data, "64m"):
        (server.data / "fetchdrive.sqlite").symlink_to(tmp_path / "database" / "fetchdrive.sqlite")
        try:
            yield server.start()
        finally:
            server.stop()


@pytest.mark.parametrize("small_disk", [1, 4], ids=["one stream", "segments"], indirect=True)
def test_a_disk_that_fills_mid_transfer_makes_the_task_wait_not_fail_as_a_network_drop(small_disk, origin):
    server = small_disk
    server.add_user("filler", "filler-password", quota="none")
    session = server.session("filler", "filler-password")
    resource = origin.add("/big.bin", BODY, rate=2 * 1024 * 1024)
    tasks_url = server.url("/api/v1/tasks")
    assert session.post(tasks_url, json={"url": origin.url("/big.bin")}).status_code == 201
    wait_for(lambda: session.get(tasks_url).json()[0]["bytes_done"] >= 2 * 1024 * 1024, timeout=60,
             message="2 MiB saved")
    ballast = server.data / "ballast.bin"
    fill_disk(ballast)
    errors: set[str] = set()

    def waited_through_give_up_after() -> bool:
        task = session.get(tasks_url).json()[0]
        assert task["state"] != "failed", task
        if task["error"]:
            errors.add(task["error"])
        return task["state"] == "waiting" and task["attempts"] >= 4

    wait_for(waited_through_give_up_after, timeout=60, message="several waits, past give_up_after")
    assert errors and all("disk" in error for error in errors), errors
    assert not any(word in error for error in errors for word in ("connect", "dropped", "segment", "network")), errors
    ballast.unlink()  # space returns
    resource.rate = None  # the throttle only kept the transfer running until the disk was full
    path = server.space("filler") / "downloads" / "big.bin"
    wait_for(path.exists, timeout=60, message="the download once space returned")
    assert path.read_bytes() == BODY
