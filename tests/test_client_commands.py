"""`fetchdrive add` and `fetchdrive sync` as subprocesses against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.downloads_helpers import wait_for
from tests import forked_cli
from tests.forked_cli import fetchdrive
from tests.slow_proxy import SlowProxy

pytestmark = pytest.mark.shared_server


def client(*args: str, password: str | None = None, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return fetchdrive(*args, input=stdin, env={"FETCHDRIVE_PASSWORD": password} if password is not None else None,
                      timeout=timeout)


def tree(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".fetchdrive-sync" not in path.parts
    }


@pytest.fixture
def filled(server, alice):
    alice.session.request("MKCOL", server.dav("photos"))
    alice.session.request("MKCOL", server.dav("photos/2026"))
    alice.session.put(server.dav("photos/a.jpg"), data=b"A" * 1000)
    alice.session.put(server.dav("photos/2026/b.jpg"), data=os.urandom(3 * 1024 * 1024))
    alice.session.put(server.dav("notes.txt"), data=b"notes")
    return server


def sync(server, account, local: Path, *extra: str) -> subprocess.CompletedProcess:
    return client("sync", "--server", server.base_url, "--user", account.name, *extra, str(local), password=account.password)


def test_add_queues_a_download_and_wait_shows_it_finish(server, alice, origin):
    origin.add("/cli.bin", b"from the terminal" * 1000)
    result = client("add", origin.url("/cli.bin"), "--server", server.base_url, "--user", alice.name, "--wait",
                    password=alice.password)
    assert result.returncode == 0, result.stderr
    assert "done: downloads/cli.bin" in result.stdout
    assert (server.space(alice.name) / "downloads" / "cli.bin").read_bytes() == b"from the terminal" * 1000


def test_add_reads_the_password_from_stdin_and_reports_a_failed_download(server, alice, origin):
    origin.add("/nope", b"", status=404)
    result = client("add", origin.url("/nope"), "--server", server.base_url, "--user", alice.name, "--password-stdin",
                    "--wait", stdin=alice.password + "\n")
    assert result.returncode == 1
    assert "failed" in result.stdout and "404" in result.stdout


@pytest.mark.parametrize(
    "args, password, message",
    [
        (["--server", "{url}", "--user", "{user}"], "wrong-password", "wrong user name or password"),
        (["--server", "http://127.0.0.1:9", "--user", "{user}"], "whatever-pass", "cannot reach"),
        (["--server", "not a url", "--user", "{user}"], "whatever-pass", "must be an http:// or https:// URL"),
        (["--server", "{url}", "--user", "{user}"], None, "no password"),
    ],
)
def test_client_mistakes_get_one_line_and_a_non_zero_exit(server, alice, tmp_path, args, password, message):
    args = [a.format(url=server.base_url, user=alice.name) for a in args]
    for command in (["add", "https://example.com/x", *args], ["sync", *args, str(tmp_path / "local")]):
        result = client(*command, password=password)
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "local").exists() or tree(tmp_path / "local") == {}


def test_first_sync_copies_everything_and_a_second_transfers_nothing(filled, alice, tmp_path):
    server = filled
    local = tmp_path / "mirror"
    first = sync(server, alice, local)
    assert first.returncode == 0, first.stderr
    assert tree(local) == tree(server.space(alice.name))
    stamps = {p: p.stat().st_mtime_ns for p in local.rglob("*") if p.is_file()}
    second = sync(server, alice, local)
    assert second.returncode == 0
    assert "synced 0 file(s)" in second.stdout
    assert stamps == {p: p.stat().st_mtime_ns for p in local.rglob("*") if p.is_file()}


def test_a_changed_file_is_updated_and_delete_mirrors_removals(filled, alice, tmp_path):
    server = filled
    local = tmp_path / "mirror"
    assert sync(server, alice, local).returncode == 0
    alice.session.put(server.dav("notes.txt"), data=b"edited notes")
    alice.session.delete(server.dav("photos/a.jpg"))
    updated = sync(server, alice, local)
    assert "synced 1 file(s)" in updated.stdout
    assert (local / "notes.txt").read_bytes() == b"edited notes"
    assert (local / "photos" / "a.jpg").exists()
    assert sync(server, alice, local, "--delete").returncode == 0
    assert not (local / "photos" / "a.jpg").exists()
    assert tree(local) == tree(server.space(alice.name))


def test_sync_of_one_folder(filled, alice, tmp_path):
    local = tmp_path / "photos"
    assert sync(filled, alice, local, "--folder", "photos").returncode == 0
    assert sorted(tree(local)) == ["2026/b.jpg", "a.jpg"]


def test_an_interrupted_sync_resumes_with_range(server, alice, tmp_path):
    big = os.urandom(8 * 1024 * 1024)
    assert alice.session.put(server.dav("big.bin"), data=big).status_code == 201
    local = tmp_path / "mirror"
    host, port = server.base_url.split("//")[1].split(":")
    proxy = SlowProxy((host, int(port)), rate=2 * 1024 * 1024)
    process = forked_cli.start(["sync", "--server", proxy.base_url, "--user", alice.name, str(local)],
                               env={**os.environ, "FETCHDRIVE_PASSWORD": alice.password}, stdout=tmp_path / "sync.log")
    partial_dir = local / ".fetchdrive-sync" / "partial"
    wait_for(lambda: partial_dir.is_dir() and any(p.stat().st_size > 0 for p in partial_dir.iterdir()),
             timeout=30, message="a partial transfer")
    process.send_signal(signal.SIGKILL)
    process.wait()
    proxy.close()
    assert not (local / "big.bin").exists()
    resumed = sync(server, alice, local)
    assert resumed.returncode == 0, resumed.stderr
    assert (local / "big.bin").read_bytes() == big
    assert "resumed big.bin at" in resumed.stdout


@pytest.mark.parametrize(
    "source, wait, reason",
    [
        ("two words", True, "printable ASCII"),
        ("two words", False, "printable ASCII"),
        ("sha256:1234", True, "64 hexadecimal"),
        ("ftp://ftp.example.org/pub/x.iso", False, "uses ftp:"),
        ("gopher://h.example/1", True, "uses gopher:"),
        ("sftp://h.example/x", False, "uses sftp:"),
    ],
)
def test_add_of_a_source_the_server_refuses_says_why_in_one_line(server, alice, source, wait, reason):
    """Before, `add 'two words' --wait` polled for a task that never comes; the subprocess
    time-out here is what such a hang would meet."""
    result = client("add", source, "--server", server.base_url, "--user", alice.name, *(["--wait"] if wait else []),
                    password=alice.password, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{source} was refused" in lines[0] and reason in lines[0], result.stderr
    assert "queued" not in result.stdout
    assert [p.name for p in (server.space(alice.name) / "downloads").iterdir()] == []  # the refused trigger is taken back
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []


def test_add_reports_refused_sources_and_still_queues_the_good_ones(server, alice, origin):
    origin.add("/good.bin", b"good" * 1000)
    result = client("add", "ftp://h.example/a", origin.url("/good.bin"), "file:///etc/passwd", "--server",
                    server.base_url, "--user", alice.name, "--wait", password=alice.password, timeout=60)
    assert result.returncode != 0
    assert "done: downloads/good.bin" in result.stdout
    last = result.stderr.strip().splitlines()[-1]  # after the progress bar
    assert "ftp://h.example/a was refused" in last and "(and 1 more refused)" in last, result.stderr


def test_add_takes_a_magnet_link_as_a_link(server, alice):
    magnet = "magnet:?xt=urn:btih:" + "d" * 40 + "&dn=thing.iso"  # no peer anywhere: it stays unfinished
    result = client("add", magnet, "--server", server.base_url, "--user", alice.name, "--wait", "--timeout", "2",
                    password=alice.password, timeout=60)
    assert "queued" in result.stdout and ".url" in result.stdout
    assert result.returncode != 0 and "still unfinished after --timeout 2" in result.stderr


@pytest.mark.parametrize("timeout", ["1", "0.5"])
def test_add_wait_gives_up_at_its_timeout_and_the_download_goes_on(server, alice, origin, timeout):
    slow = origin.add("/slow.bin", b"s" * 100_000, rate=20_000)
    result = client("add", origin.url("/slow.bin"), "--server", server.base_url, "--user", alice.name, "--wait",
                    "--timeout", timeout, password=alice.password, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines and f"still unfinished after --timeout {timeout}" in lines[-1], result.stderr
    slow.rate = None  # the pace kept it unfinished past --timeout; it need not slow the rest
    wait_for((server.space(alice.name) / "downloads" / "slow.bin").exists, timeout=60, message="the download after --timeout")


@pytest.mark.parametrize("args, message", [
    (["--wait", "--timeout", "0"], "positive number of seconds"),
    (["--wait", "--timeout", "-3"], "positive number of seconds"),
    (["--wait", "--timeout", "soon"], "positive number of seconds"),
    (["--wait", "--timeout", "inf"], "positive number of seconds"),
    (["--wait", "--timeout", "nan"], "positive number of seconds"),
    (["--timeout", "5"], "--timeout limits --wait"),
])
def test_add_timeout_must_be_a_positive_number_with_wait(server, alice, args, message):
    result = client("add", "https://example.com/x", "--server", server.base_url, "--user", alice.name, *args,
                    password=alice.password)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []
