"""Trigger uploads by real clients: rclone copy and sync, cadaver, webdavclient3, and the
request sequences of Windows Explorer and macOS Finder. Each trigger starts exactly one
download and makes exactly one file, the client sees no error, and the same links uploaded
again later start nothing new (SPEC 4.4)."""

from __future__ import annotations

import os
import plistlib
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from webdav3.client import Client

from tests.conftest import Account, new_account
from tests.downloads_helpers import files_in, rclone, url_shortcut, wait_for

LOCK_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    "<D:locktype><D:write/></D:locktype><D:owner>client</D:owner></D:lockinfo>"
)
WIN32_TIMES = (
    '<?xml version="1.0" encoding="utf-8"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:">'
    "<D:set><D:prop><Z:Win32CreationTime>Sat, 28 Nov 2026 10:00:00 GMT</Z:Win32CreationTime>"
    "<Z:Win32LastModifiedTime>Sat, 28 Nov 2026 10:00:00 GMT</Z:Win32LastModifiedTime>"
    "<Z:Win32FileAttributes>00000020</Z:Win32FileAttributes></D:prop></D:set></D:propertyupdate>"
)
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000)


def make_links(origin, local: Path, tag: str) -> dict[str, str]:
    """Trigger files of each kind in `local`, each for its own file at the origin; {trigger: file name}."""
    local.mkdir(parents=True, exist_ok=True)
    expected = {}
    kinds = {
        ".url": lambda url: url_shortcut(url),
        ".webloc": lambda url: plistlib.dumps({"URL": url}),
        ".desktop": lambda url: f"[Desktop Entry]\nType=Link\nName=x\nURL={url}\n".encode(),
        ".txt.url": lambda url: f"# a plain list\n{url}\n".encode(),
    }
    for number, (suffix, content) in enumerate(kinds.items()):
        name = f"{tag}-{number}.bin"
        origin.add(f"/{name}", os.urandom(20_000 + number))
        (local / f"{tag}-{number}{suffix}").write_bytes(content(f"{origin.base_url}/{name}"))
        expected[f"{tag}-{number}{suffix}"] = name
    return expected


def tasks_by_trigger(account, server) -> Counter:
    tasks = account.session.get(server.url("/api/v1/tasks")).json()
    return Counter(task["trigger"] for task in tasks)


def wait_until_delivered(account, server, folder: str, expected: dict[str, str]) -> None:
    """Every trigger's one task is done, its file is there and the trigger has gone."""
    on_disk = server.space(account.name) / folder

    def settled() -> bool:
        tasks = account.session.get(server.url("/api/v1/tasks")).json()
        mine = [task for task in tasks if task["folder"] == folder]
        return all(task["state"] == "done" for task in mine) and set(files_in(on_disk)) == set(expected.values())

    wait_for(settled, timeout=60, message=f"{folder}: every download done and every trigger gone")


def upload(account, server, local: Path, names) -> None:
    """PUT each of the trigger files `names` from `local` into downloads/."""
    for name in names:
        assert account.session.put(server.dav(f"downloads/{name}"), data=(local / name).read_bytes()).status_code < 300


def assert_one_task_per_trigger(account, server, folder: str, expected: dict[str, str]) -> None:
    counts = tasks_by_trigger(account, server)
    assert {trigger: counts[f"{folder}/{trigger}"] for trigger in expected} == {trigger: 1 for trigger in expected}


# Long enough for each client's look at its upload right after its PUT (milliseconds later,
# here), short enough to see them go: the tests wait for it again and again.
LINGERING = {"engine.trigger_linger": 2}
pytestmark = pytest.mark.shared_server(settings=LINGERING)


@pytest.fixture
def carol(server) -> Account:
    return new_account(server, "carol", "carol-password")


def test_rclone_copy_of_a_links_folder_succeeds_once_and_copying_it_again_starts_nothing(
        server, carol, origin, tmp_path):
    expected = make_links(origin, tmp_path / "links", "copy")
    first = rclone(server, carol, "copy", str(tmp_path / "links"), "fd:downloads")
    assert first.returncode == 0 and "ERROR" not in first.stderr, first.stderr
    again_at_once = rclone(server, carol, "copy", str(tmp_path / "links"), "fd:downloads")
    assert again_at_once.returncode == 0 and "ERROR" not in again_at_once.stderr, again_at_once.stderr
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)

    later = rclone(server, carol, "copy", str(tmp_path / "links"), "fd:downloads")
    assert later.returncode == 0 and "ERROR" not in later.stderr, later.stderr
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)
    fetched = Counter(entry.path for entry in origin.requests if entry.method == "GET")
    assert all(fetched[f"/{name}"] == 1 for name in expected.values()), fetched


def test_rclone_sync_of_a_links_folder_succeeds_with_one_file_per_trigger(server, carol, origin, tmp_path):
    expected = make_links(origin, tmp_path / "links", "sync")
    assert carol.session.request("MKCOL", server.dav("downloads/synced")).status_code == 201
    result = rclone(server, carol, "sync", str(tmp_path / "links"), "fd:downloads/synced")
    assert result.returncode == 0 and "ERROR" not in result.stderr, result.stderr
    wait_until_delivered(carol, server, "downloads/synced", expected)
    assert_one_task_per_trigger(carol, server, "downloads/synced", expected)


def test_cadaver_put_starts_one_download_per_trigger(server, carol, origin, tmp_path):
    home = tmp_path / "home"
    expected = make_links(origin, home, "cadaver")
    (home / ".netrc").write_text(f"machine 127.0.0.1 login {carol.name} password {carol.password}\n")
    (home / ".netrc").chmod(0o600)
    commands = "".join(f"put {name}\n" for name in expected) + "ls\nquit\n"
    result = subprocess.run(["cadaver", server.dav("downloads/")], input=commands, capture_output=True, text=True,
                            cwd=home, env={**os.environ, "HOME": str(home)}, timeout=120)
    assert result.returncode == 0 and result.stdout.count("succeeded") == len(expected) + 1, result.stdout
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)


def test_webdavclient3_upload_and_check_start_one_download_per_trigger(server, carol, origin, tmp_path):
    expected = make_links(origin, tmp_path / "links", "wdc")
    client = Client({"webdav_hostname": server.base_url, "webdav_root": "/dav/",
                     "webdav_login": carol.name, "webdav_password": carol.password})
    for name in expected:
        client.upload_sync(remote_path=f"downloads/{name}", local_path=str(tmp_path / "links" / name))
        assert client.check(f"downloads/{name}")
        assert int(client.info(f"downloads/{name}")["size"]) == (tmp_path / "links" / name).stat().st_size
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)


def test_windows_explorer_sequence_starts_one_download_per_trigger(server, carol, origin, tmp_path):
    """LOCK a new name, PUT 0 bytes, PUT the content, PROPPATCH the Win32 times, UNLOCK, look."""
    expected = make_links(origin, tmp_path / "links", "win")
    session = carol.session
    for name in expected:
        url = server.dav(f"downloads/{name}")
        locked = session.request("LOCK", url, data=LOCK_BODY, headers={"Timeout": "Second-180"})
        assert locked.status_code in (200, 201), locked.text
        token = locked.headers["Lock-Token"]
        held = {"If": f"({token})"}
        answers = [
            session.put(url, data=b"", headers=held),
            session.put(url, data=(tmp_path / "links" / name).read_bytes(), headers=held),
            session.request("PROPPATCH", url, data=WIN32_TIMES, headers=held),
            session.request("UNLOCK", url, headers={"Lock-Token": token}),
            session.request("PROPFIND", url, headers={"Depth": "0"}),
        ]
        assert [answer.status_code for answer in answers][2:] == [207, 204, 207], [a.text[:200] for a in answers]
        assert all(answer.status_code < 300 for answer in answers), [a.status_code for a in answers]
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)


def test_finder_sequence_starts_one_download_per_trigger_and_its_apple_double_goes_with_it(
        server, carol, origin, tmp_path):
    """An empty PUT, the `._` AppleDouble file, LOCK, a chunked PUT with X-Expected-Entity-Length,
    UNLOCK, `.DS_Store`, look."""
    expected = make_links(origin, tmp_path / "links", "finder")
    session = carol.session
    for name in expected:
        url = server.dav(f"downloads/{name}")
        content = (tmp_path / "links" / name).read_bytes()
        answers = [session.put(url, data=b""), session.put(server.dav(f"downloads/._{name}"), data=APPLE_DOUBLE)]
        locked = session.request("LOCK", url, data=LOCK_BODY, headers={"Timeout": "Second-180"})
        token = locked.headers["Lock-Token"]
        answers += [
            locked,
            session.put(url, data=iter([content[:10], content[10:]]),
                        headers={"If": f"({token})", "X-Expected-Entity-Length": str(len(content))}),
            session.request("UNLOCK", url, headers={"Lock-Token": token}),
            session.put(server.dav("downloads/.DS_Store"), data=b"\x00\x00\x00\x01Bud1" + bytes(100)),
            session.request("PROPFIND", url, headers={"Depth": "0"}),
        ]
        assert all(answer.status_code < 300 for answer in answers), [(a.status_code, a.text[:100]) for a in answers]
    wait_until_delivered(carol, server, "downloads", {**expected, ".DS_Store": ".DS_Store"})
    assert_one_task_per_trigger(carol, server, "downloads", expected)


def test_an_identical_trigger_starts_nothing_while_its_file_is_there_but_does_once_the_file_is_gone(
        server, carol, origin, tmp_path):
    expected = make_links(origin, tmp_path / "links", "again")
    upload(carol, server, tmp_path / "links", expected)
    wait_until_delivered(carol, server, "downloads", expected)
    upload(carol, server, tmp_path / "links", expected)  # identical again: nothing new
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)

    gone, kept = list(expected.items())[:2], list(expected.items())[2:]
    for trigger, file_name in gone:  # the file deleted: the same trigger fetches it again
        assert carol.session.delete(server.dav(f"downloads/{file_name}")).status_code == 204
        carol.session.put(server.dav(f"downloads/{trigger}"), data=(tmp_path / "links" / trigger).read_bytes())
    for trigger, _ in kept:  # changed options: a new download, under a new name
        content = url_shortcut(f"{origin.base_url}/{expected[trigger]}", filename=f"renamed-{expected[trigger]}")
        carol.session.put(server.dav(f"downloads/{trigger}.url"), data=content)
    wait_until_delivered(carol, server, "downloads", {
        **expected, **{f"{t}.url": f"renamed-{name}" for t, name in kept}})
    counts = tasks_by_trigger(carol, server)
    assert [counts[f"downloads/{trigger}"] for trigger, _ in gone] == [2, 2]
    assert [counts[f"downloads/{trigger}.url"] for trigger, _ in kept] == [1, 1]


def test_a_trigger_still_lingering_at_a_crash_goes_after_the_restart_and_starts_nothing(make_server, origin, tmp_path):
    # Killed: a server of its own, whose triggers linger long enough to be there at the kill
    # after the test has seen the last file arrive.
    server = make_server(settings={"engine.trigger_linger": 3})
    carol = new_account(server, "carol", "carol-password")
    expected = make_links(origin, tmp_path / "links", "crash")
    upload(carol, server, tmp_path / "links", expected)
    downloads = server.space(carol.name) / "downloads"
    wait_for(lambda: set(expected.values()) <= set(files_in(downloads)), message="every file delivered")
    server.kill()
    assert set(expected) & set(files_in(downloads))  # killed while (some of) the triggers lingered
    server.start()
    wait_until_delivered(carol, server, "downloads", expected)
    assert_one_task_per_trigger(carol, server, "downloads", expected)
