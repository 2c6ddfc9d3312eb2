"""`fetchdrive sync --watch` keeps a folder in step until interrupted, and a full local disk
stops `sync` with one clear line, leaving no partial file behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests import forked_cli
from tests.downloads_helpers import wait_for
from tests.forked_cli import fetchdrive
from tests.test_client_commands import tree


def test_watch_follows_new_and_changed_files_until_interrupted(server, alice, tmp_path):
    local = tmp_path / "mirror"
    alice.session.put(server.dav("first.txt"), data=b"one")
    errors = tmp_path / "errors.log"
    watcher = forked_cli.start(["sync", "--server", server.base_url, "--user", "alice", "--watch", "0.5", str(local)],
                               env={**os.environ, "FETCHDRIVE_PASSWORD": alice.password}, stdout=tmp_path / "output.log",
                               stderr=errors)
    try:
        wait_for(lambda: tree(local).get("first.txt") == b"one", message="first file synced")
        alice.session.put(server.dav("second.txt"), data=b"two")
        wait_for(lambda: tree(local).get("second.txt") == b"two", message="a new file synced")
        alice.session.put(server.dav("first.txt"), data=b"one, changed")
        wait_for(lambda: tree(local).get("first.txt") == b"one, changed", message="a changed file synced")
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.wait(timeout=30)
    err = errors.read_text()
    assert watcher.returncode == 130
    assert err.strip().splitlines()[-1].endswith("interrupted") and "Traceback" not in err
    assert sorted(tree(local)) == ["first.txt", "second.txt"]


@pytest.fixture
def tiny_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs: a real full disk, not a simulated one."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_local_disk_stops_sync_with_one_line_and_no_partial_file(server, alice, tiny_disk):
    alice.session.put(server.dav("small.txt"), data=b"fits")
    alice.session.put(server.dav("big.bin"), data=os.urandom(3 * 1024 * 1024))
    result = fetchdrive("sync", "--server", server.base_url, "--user", "alice", str(tiny_disk),
                        env={"FETCHDRIVE_PASSWORD": alice.password}, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "local disk full while writing big.bin" in errors[0], result.stderr
    left = {str(path.relative_to(tiny_disk)) for path in tiny_disk.rglob("*") if path.is_file()}
    assert "big.bin" not in left
    assert not [name for name in left if name.endswith((".part", ".tmp")) or "partial" in name], left
