"""`fetchdrive migrate-db --to postgresql://...` (SPEC 8, issue 17): a drive used on the embedded
database moves into a fresh PostgreSQL database and serves from it as before (logins, quotas,
tasks, a download that was running, share links, devices, locks and dead properties), and the
command refuses, in one line with exit status 2, whatever would lose or mix up data."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import yaml

from tests.conftest import Account, new_account
from tests.downloads_helpers import url_shortcut, wait_for
from tests.forked_cli import fetchdrive
from tests.postgres import PASSWORD
from tests.server_process import ADMIN_PASSWORD, PASSWORDS_USED, REPO, ServerProcess

SIZE = 4 * 1024 * 1024
BODY = bytes(range(256)) * (SIZE // 256)
SHARE_PASSWORD = "share-pw-Mv9"
DORA_PASSWORD = "dora-pw-Mv2"
WRONG_PASSWORD = "wrong-pw-Mv4"
PASSWORDS_USED.update({SHARE_PASSWORD, DORA_PASSWORD, WRONG_PASSWORD})
PROPPATCH = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop>'
             "<Z:mark>{mark}</Z:mark></D:prop></D:set></D:propertyupdate>")
PROPFIND = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:x"><D:prop><Z:mark/></D:prop></D:propfind>'
LOCK_BODY = ('<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/>'
             "</D:lockscope><D:locktype><D:write/></D:locktype><D:owner>mover</D:owner></D:lockinfo>")


def use_database(server: ServerProcess, url: str) -> None:
    """Point the server's config file at the database `url` (it takes effect at its next start)."""
    tree = yaml.safe_load(server.config_path.read_text())
    tree["database"] = {"url": url}
    server.config_path.write_text(yaml.safe_dump(tree))


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    """`fetchdrive --config CONFIG ARGS...` as a process of its own, forked with the app already
    imported (tests/forked_cli.py: a new interpreter took 1 to 3 s a command)."""
    return fetchdrive("--config", str(server.config_path), *args)


def migrate(server: ServerProcess, url: str) -> subprocess.CompletedProcess:
    return cli(server, "migrate-db", "--to", url)


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    """One line on stderr naming the reason, exit status 2, no secret."""
    assert result.returncode == 2, result
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("fetchdrive: error: ")
    assert "Traceback" not in result.stderr and PASSWORD not in result.stderr
    for word in words:
        assert word in result.stderr


def rows(url: str, table: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(f'select count(*) from "{table}"').fetchone()[0]


def tasks_by_id(server: ServerProcess, account: Account) -> dict[int, dict]:
    return {task["id"]: task for task in account.session.get(server.url("/api/v1/tasks")).json()}


def quota_of(server: ServerProcess, account: Account) -> tuple[int, int | None]:
    me = account.session.get(server.url("/api/v1/me")).json()
    return me["used_bytes"], me["quota_bytes"]


def finished(task: dict) -> tuple:
    return task["source"], task["state"], task["path"], task["bytes_total"], task["error"]


def test_a_drive_moved_to_postgresql_serves_as_before(make_server, origin, postgres_url):
    server = make_server(settings={"engine.connections_per_task": 1})
    accounts = [new_account(server, name, f"{name}-pw-Mv1", quota) for name, quota in
                (("alice", "50M"), ("bob", "20M"), ("carol", "none"))]
    alice, bob, carol = accounts
    origin.add("/catalogued.bin", b"from the catalog")
    assert cli(server, "catalog", "add", "manual", origin.url("/catalogued.bin"), "--filename", "manual.pdf").returncode == 0
    assert cli(server, "catalog", "add", "other", origin.url("/never.bin")).returncode == 0
    for account in accounts:
        body = f"{account.name}'s notes".encode()
        assert account.session.put(server.dav("notes.txt"), data=body).status_code == 201
        assert account.session.request("PROPPATCH", server.dav("notes.txt"),
                                        data=PROPPATCH.format(mark=f"mark of {account.name}")).status_code == 207
        origin.add(f"/done-{account.name}.bin", body * 100)
        trigger = url_shortcut(origin.url(f"/done-{account.name}.bin"))
        assert account.session.put(server.dav("downloads/done.url"), data=trigger).status_code == 201
    assert carol.session.put(server.dav("downloads/manual.id"), data=b"manual").status_code == 201
    for account, name in [*((account, f"done-{account.name}.bin") for account in accounts), (carol, "manual.pdf")]:
        wait_for((server.space(account.name) / "downloads" / name).exists, timeout=60, message=name)
    # The finished triggers go (and leave the quota) before the quota is compared.
    for account, trigger in [*((account, "done.url") for account in accounts), (carol, "manual.id")]:
        wait_for(lambda: not (server.space(account.name) / "downloads" / trigger).exists(), message=f"{trigger} gone")
    # alice's download runs slowly and is cut by the stop, with bytes saved.
    origin.add("/running.bin", BODY, rate=512 * 1024)
    assert alice.session.put(server.dav("downloads/running.url"), data=url_shortcut(origin.url("/running.bin"))).status_code == 201
    locked = alice.session.request("LOCK", server.dav("notes.txt"), data=LOCK_BODY, headers={"Timeout": "Second-3600"})
    token = locked.headers["Lock-Token"]
    assert bob.session.request("MKCOL", server.dav("album/")).status_code == 201
    assert bob.session.put(server.dav("album/photo.jpg"), data=b"JPEG photo").status_code == 201
    file_share = bob.session.post(server.url("/api/v1/shares"), json={"path": "notes.txt", "password": SHARE_PASSWORD}).json()
    folder_share = bob.session.post(server.url("/api/v1/shares"), json={"path": "album"}).json()
    assert carol.session.put(server.url("/api/v1/devices/desk")).status_code == 201
    assert carol.session.post(server.url("/api/v1/devices/desk/send"), json={"path": "notes.txt"}).status_code == 201
    wait_for(lambda: origin.bytes_sent("/running.bin") > SIZE // 8, message="part of the running download")
    tasks_before = {account.name: tasks_by_id(server, account) for account in accounts}
    me_before = {account.name: quota_of(server, account) for account in (bob, carol)}
    server.stop()
    users_before = cli(server, "user", "list").stdout

    moved = migrate(server, postgres_url)

    assert moved.returncode == 0, moved.stderr
    masked = postgres_url.replace(PASSWORD, "***")
    summary, next_step = moved.stdout.splitlines()
    assert summary.startswith("moved 4 users, ") and summary.endswith(f" to {masked}")
    assert "2 catalog entries" in summary and "2 share links" in summary and "1 device," in summary
    assert "2 lock records" in summary and "3 resources with dead properties" in summary
    assert "nodes" not in summary and "schema" not in summary
    assert next_step.startswith(f"next: set database.url to {masked}")
    assert PASSWORD not in moved.stdout + moved.stderr
    use_database(server, postgres_url)
    assert cli(server, "user", "list").stdout == users_before
    origin.add("/running.bin", BODY)  # the same content and validators, without the throttle
    server.start()

    assert server.session("admin", ADMIN_PASSWORD).get(server.dav()).status_code == 200
    for account in accounts:
        assert account.session.get(server.dav("notes.txt")).content == f"{account.name}'s notes".encode()
        assert server.session(account.name, "wrong-pw-Mv1").get(server.dav()).status_code == 401
        mark = account.session.request("PROPFIND", server.dav("notes.txt"), data=PROPFIND, headers={"Depth": "0"})
        assert f"mark of {account.name}" in mark.text
        after = tasks_by_id(server, account)
        assert after.keys() == tasks_before[account.name].keys()
        for task_id, task in tasks_before[account.name].items():
            if task["state"] == "done":
                assert finished(after[task_id]) == finished(task)
    for account in (bob, carol):
        assert quota_of(server, account) == me_before[account.name]
    # The download cut by the stop resumes from its saved bytes.
    wait_for((server.space(alice.name) / "downloads" / "running.bin").exists, timeout=60, message="the resumed download")
    assert (server.space(alice.name) / "downloads" / "running.bin").read_bytes() == BODY
    assert origin.bytes_sent("/running.bin") < 1.3 * SIZE
    assert alice.session.put(server.dav("notes.txt"), data=b"overwritten").status_code == 423
    assert alice.session.put(server.dav("notes.txt"), data=b"mine", headers={"If": f"({token})"}).status_code == 204
    # The server listens on a new port now: the links' paths stay.
    file_link, folder_link = (server.url(urlsplit(made["url"]).path) for made in (file_share, folder_share))
    visitor = server.session("anyone", SHARE_PASSWORD)
    assert visitor.get(file_link).content == b"bob's notes"
    assert server.session("anyone", "not-the-pw-Mv9").get(file_link).status_code == 401
    assert b"photo.jpg" in visitor.get(folder_link).content
    devices = {device["name"]: device for device in carol.session.get(server.url("/api/v1/devices")).json()}
    assert devices["desk"]["pending"] == 1
    old_ids = {task_id for tasks in tasks_before.values() for task_id in tasks}
    origin.add("/new.bin", b"a new download")
    added = carol.session.post(server.url("/api/v1/tasks"), json={"url": origin.url("/new.bin")})
    assert added.status_code == 201 and added.json()["id"] > max(old_ids)


def test_a_table_of_more_rows_than_one_insert_takes_moves_whole(tmp_path, postgres_url):
    entries = [{"id": f"image-{number}", "url": f"https://example.org/{number}.iso"} for number in range(1234)]
    server = ServerProcess(tmp_path / "drive", {"catalog": entries})
    server.start().stop()  # a start files the config's catalog
    moved = migrate(server, postgres_url)
    assert moved.returncode == 0, moved.stderr
    assert "1234 catalog entries" in moved.stdout
    with psycopg.connect(postgres_url) as connection:
        ids = {row[0] for row in connection.execute("select id from catalog")}
    assert ids == {entry["id"] for entry in entries}


def embedded_drive(base: Path) -> ServerProcess:
    """A data folder with an embedded database holding one user, and no server running."""
    server = ServerProcess(base)
    server.add_user("dora", DORA_PASSWORD)
    return server


@pytest.mark.parametrize("url", [
    "sqlite:",
    "mysql://fetch:secret-Mv3@127.0.0.1/drive",
    "https://fetch:secret-Mv3@127.0.0.1:5432/drive",
    "127.0.0.1:5432/drive",
    "",
])
def test_migrate_db_refuses_a_url_that_is_not_postgresql(tmp_path, url):
    server = embedded_drive(tmp_path / "drive")
    result = migrate(server, url)
    assert_refused(result, "postgresql://")
    assert "secret-Mv3" not in result.stderr


@pytest.mark.parametrize("url", ["postgresql://fetch:secret-Mv3@127.0.0.1:1/drive", "postgres://127.0.0.1/drive"])
def test_migrate_db_refuses_when_the_drive_already_uses_postgresql(tmp_path, url):
    server = ServerProcess(tmp_path / "drive", {"database.url": url})
    result = migrate(server, "postgresql://127.0.0.1:1/other")
    assert_refused(result, "database.url is postgres", "already")
    assert "secret-Mv3" not in result.stderr


def test_migrate_db_refuses_a_data_folder_without_an_embedded_database(tmp_path, postgres_url):
    server = ServerProcess(tmp_path / "drive")
    assert_refused(migrate(server, postgres_url), "no embedded database")
    assert not (server.data / "fetchdrive.sqlite").exists()


def _command_waiting_for_a_password(server: ServerProcess) -> subprocess.Popen:
    """`user add --password-stdin` with the database open, reading a password not sent yet."""
    return subprocess.Popen([sys.executable, "-m", "server.cli", "--config", str(server.config_path),
                             "user", "add", "erin", "--password-stdin"],
                            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("holder", ["a running server", "a command waiting for input"])
def test_migrate_db_refuses_while_another_process_has_the_database_open(tmp_path, postgres_url, holder):
    server = embedded_drive(tmp_path / "drive")
    if holder == "a running server":
        server.start()
        process = server.process
    else:
        process = _command_waiting_for_a_password(server)
        wait_for(lambda: has_open(process, server.data / "fetchdrive.sqlite"), message="the command's database open")
    assert_refused(migrate(server, postgres_url), "open in another process", "stop the server")
    assert not _has_schema(postgres_url)  # refused before the target was touched
    # kill -9 leaves no trace that would keep refusing: the kernel drops the dead process's lock.
    process.kill()
    process.wait()
    moved = migrate(server, postgres_url)
    assert moved.returncode == 0, moved.stderr
    assert rows(postgres_url, "users") == 1


def has_open(process: subprocess.Popen, path: Path) -> bool:
    """Whether `process` has the file `path` open (Linux's /proc)."""
    for descriptor in Path(f"/proc/{process.pid}/fd").iterdir():
        with suppress(FileNotFoundError):  # closed meanwhile
            if os.readlink(descriptor) == str(path.resolve()):
                return True
    return False


def _has_schema(url: str) -> bool:
    with psycopg.connect(url) as connection:
        return connection.execute("select to_regclass('users') is not null").fetchone()[0]


@pytest.mark.parametrize("fault", ["closed port", "wrong password", "unknown database", "unknown user"])
def test_migrate_db_refuses_a_target_it_cannot_open(tmp_path, postgres_url, fault):
    parts = urlsplit(postgres_url)
    user, port, path = parts.username, parts.port, parts.path
    password = WRONG_PASSWORD if fault == "wrong password" else parts.password
    port = 1 if fault == "closed port" else port
    path = "/no_such_database" if fault == "unknown database" else path
    user = "nobody" if fault == "unknown user" else user
    url = urlunsplit(parts._replace(netloc=f"{user}:{password}@127.0.0.1:{port}", path=path))
    server = embedded_drive(tmp_path / "drive")
    result = migrate(server, url)
    assert_refused(result, "cannot open the database")
    assert WRONG_PASSWORD not in result.stderr
    assert cli(server, "user", "list").stdout.count("dora") == 1  # the source is as it was


@pytest.mark.parametrize("earlier", ["a server ran on it", "a catalog entry", "an earlier move"])
def test_migrate_db_refuses_a_target_that_holds_data(tmp_path, postgres_url, earlier):
    if earlier == "a server ran on it":
        ServerProcess(tmp_path / "other", {"database.url": postgres_url}).start().stop()
    elif earlier == "a catalog entry":
        other = ServerProcess(tmp_path / "other", {"database.url": postgres_url})
        assert cli(other, "catalog", "add", "kept", "https://example.org/kept.iso").returncode == 0
    else:
        assert migrate(embedded_drive(tmp_path / "other"), postgres_url).returncode == 0
    counts = {table: rows(postgres_url, table) for table in ("users", "catalog", "tasks")}
    server = embedded_drive(tmp_path / "drive")
    assert_refused(migrate(server, postgres_url), "already holds data", "create a new one")
    assert {table: rows(postgres_url, table) for table in counts} == counts


@pytest.mark.parametrize("table, column, value", [
    ("catalog", "filename", "a\x00b.iso"),  # PostgreSQL text cannot hold NUL
    ("users", "used_bytes", "many"),  # SQLite keeps text in an integer column
    ("catalog", "added_at", "yesterday"),
])
def test_a_move_that_fails_midway_leaves_the_target_empty(tmp_path, postgres_url, table, column, value):
    server = embedded_drive(tmp_path / "drive")
    assert cli(server, "catalog", "add", "image", "https://example.org/image.iso").returncode == 0
    # A row PostgreSQL refuses, written behind fetchdrive's back: the move fails at that row,
    # after the rows before it went in.
    with closing(sqlite3.connect(server.data / "fetchdrive.sqlite")) as database, database:
        database.execute(f'update "{table}" set "{column}" = ? where rowid = (select max(rowid) from "{table}")', [value])
    result = migrate(server, postgres_url)
    assert_refused(result, "nothing was moved")
    for table_name in ("users", "catalog", "tasks", "events"):
        assert rows(postgres_url, table_name) == 0

