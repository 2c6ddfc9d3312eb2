"""The magic downloads folder end to end: triggers in every format, naming, failures, cancel."""

from __future__ import annotations

import hashlib
import plistlib
import re
import time

import pytest

from tests.downloads_helpers import files_in, temp_downloads, url_shortcut, wait_for

BODY = bytes(range(256)) * 4096  # 1 MiB

# One worker runs the whole file (--dist loadgroup), so each of its shared servers starts once, not once a worker.
# Its finished triggers linger 0.2 s, not 1: no client here reads its upload back, and a dozen
# tests wait for them to go.
pytestmark = [pytest.mark.shared_server(settings={"engine.trigger_linger": 0.2}), pytest.mark.xdist_group("test_downloads")]


def delivered(server, user: str, name: str, folder: str = "downloads") -> bytes:
    path = server.space(user) / folder / name
    wait_for(path.exists, message=f"{folder}/{name}")
    return path.read_bytes()


def listing(server, account, folder: str = "downloads/") -> str:
    return account.session.request("PROPFIND", server.dav(folder), headers={"Depth": "1"}).text


def error_text(server, user: str, trigger: str) -> str:
    path = server.space(user) / "downloads" / f"{trigger}.error.txt"
    wait_for(path.exists, message=f"{trigger}.error.txt")
    return path.read_text()


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "trigger, content",
    [
        ("ini.url", lambda url: url_shortcut(url)),
        ("plain.url", lambda url: f"# a comment\n{url}\n".encode()),
        ("mac.webloc", lambda url: plistlib.dumps({"URL": url})),
        ("binary.webloc", lambda url: plistlib.dumps({"URL": url}, fmt=plistlib.FMT_BINARY)),
        ("linux.desktop", lambda url: f"[Desktop Entry]\nType=Link\nName=x\nURL={url}\n".encode()),
    ],
)
def test_every_link_format_downloads_and_removes_the_trigger(server, alice, origin, trigger, content):
    origin.add("/files/data.bin", BODY)
    assert alice.session.put(server.dav(f"downloads/{trigger}"), data=content(origin.url("/files/data.bin"))).status_code == 201
    assert delivered(server, alice.name, "data.bin") == BODY
    wait_for(lambda: trigger not in files_in(server.space(alice.name) / "downloads"), message="trigger removed")
    assert temp_downloads(server.data) == []


def test_a_plain_url_file_with_several_lines_makes_one_task_per_url(server, alice, origin):
    origin.add("/a.txt", b"first")
    origin.add("/b.txt", b"second")
    alice.session.put(server.dav("downloads/two.url"), data=f"{origin.url('/a.txt')}\n{origin.url('/b.txt')}\n".encode())
    assert delivered(server, alice.name, "a.txt") == b"first"
    assert delivered(server, alice.name, "b.txt") == b"second"
    wait_for(lambda: "two.url" not in files_in(server.space(alice.name) / "downloads"), message="trigger removed")


def test_a_trigger_in_a_subfolder_delivers_into_that_folder(server, alice, origin):
    origin.add("/sub.bin", b"in a subfolder")
    alice.session.request("MKCOL", server.dav("downloads/music"))
    alice.session.put(server.dav("downloads/music/song.url"), data=url_shortcut(origin.url("/sub.bin")))
    assert delivered(server, alice.name, "sub.bin", folder="downloads/music") == b"in a subfolder"


@pytest.mark.both_databases
def test_a_placeholder_shows_progress_while_downloading(server, alice, origin):
    paced = origin.add("/slow.bin", BODY, rate=256 * 1024)
    alice.session.put(server.dav("downloads/slow.url"), data=url_shortcut(origin.url("/slow.bin")))
    downloads = server.space(alice.name) / "downloads"
    wait_for(lambda: "slow.bin.part" in listing(server, alice), timeout=2, message="the .part placeholder within 2 s")
    assert alice.session.put(server.dav("downloads/slow.bin.part"), data=b"x").status_code == 403
    assert alice.session.delete(server.dav("downloads/slow.bin.part")).status_code == 403
    assert not (downloads / "slow.bin").exists()
    status = alice.session.get(server.dav("downloads/fetchdrive-status.txt"))
    assert status.status_code == 200 and "slow.bin: downloading" in status.text
    # A percentage once the size is known, bytes so far before that; never "? %".
    assert re.search(r"downloading, (\d+ % of|[\d.]+ \w+ so far)", status.text) and "?" not in status.text
    assert alice.session.put(server.dav("downloads/fetchdrive-status.txt"), data=b"x").status_code == 403
    paced.rate = None  # the pace was for the looks above; the rest need not wait on it
    assert delivered(server, alice.name, "slow.bin") == BODY
    # The file is linked into place a moment before its task is marked done (a database
    # round trip, longer on PostgreSQL): the placeholder goes then.
    wait_for(lambda: "slow.bin.part" not in listing(server, alice), message="the placeholder gone")


# The tables below are checked in one test by one user each, with a trigger and origin path
# per row (a user per row before): the rows' names and files do not meet.

CONTENT_DISPOSITIONS = [  # (Content-Disposition, the name the file gets)
    ('attachment; filename="report.pdf"', "report.pdf"),
    ("attachment; filename*=UTF-8''na%C3%AFve%20r%C3%A9sum%C3%A9.txt", "naïve résumé.txt"),
    ('attachment; filename="../../../etc/passwd"', "passwd"),
    ('attachment; filename="..\\\\..\\\\boot.ini"', "boot.ini"),
]


def test_names_come_from_content_disposition_and_are_sanitised(server, alice, origin):
    for number, (disposition, expected_name) in enumerate(CONTENT_DISPOSITIONS):
        origin.add(f"/download{number}", f"named {number}".encode(), content_disposition=disposition)
        alice.session.put(server.dav(f"downloads/named{number}.url"), data=url_shortcut(origin.url(f"/download{number}")))
        assert delivered(server, alice.name, expected_name) == f"named {number}".encode(), disposition
    assert not (server.space(alice.name) / "etc").exists()
    assert sorted(name for name in files_in(server.space(alice.name) / "downloads") if not name.endswith(".url")) == \
        sorted(name for _disposition, name in CONTENT_DISPOSITIONS)


def test_the_url_path_is_percent_decoded_and_the_trigger_filename_wins(server, alice, origin):
    origin.add("/dir/hello%20world.txt", b"decoded")
    alice.session.put(server.dav("downloads/a.url"), data=url_shortcut(origin.url("/dir/hello%20world.txt")))
    assert delivered(server, alice.name, "hello world.txt") == b"decoded"
    origin.add("/other", b"renamed", content_disposition='attachment; filename="ignored.bin"')
    alice.session.put(server.dav("downloads/b.url"), data=url_shortcut(origin.url("/other"), filename="chosen.bin"))
    assert delivered(server, alice.name, "chosen.bin") == b"renamed"


def test_a_url_without_a_path_segment_is_named_after_the_trigger(server, alice, origin):
    origin.add("/", b"root document")
    alice.session.put(server.dav("downloads/homepage.url"), data=url_shortcut(origin.url("/")))
    assert delivered(server, alice.name, "homepage") == b"root document"


def test_an_existing_name_gets_a_number_before_the_extension(server, alice, origin):
    alice.session.put(server.dav("downloads/data.bin"), data=b"mine")
    origin.add("/data.bin", b"fetched")
    alice.session.put(server.dav("downloads/x.url"), data=url_shortcut(origin.url("/data.bin")))
    assert delivered(server, alice.name, "data (1).bin") == b"fetched"
    assert (server.space(alice.name) / "downloads" / "data.bin").read_bytes() == b"mine"


def test_a_matching_checksum_delivers_and_a_wrong_one_fails_without_a_file(server, alice, origin):
    origin.add("/sum.bin", BODY)
    good = hashlib.sha256(BODY).hexdigest()
    alice.session.put(server.dav("downloads/good.url"), data=url_shortcut(origin.url("/sum.bin"), sha256=good))
    assert delivered(server, alice.name, "sum.bin") == BODY
    origin.add("/bad.bin", BODY)
    alice.session.put(server.dav("downloads/bad.url"), data=url_shortcut(origin.url("/bad.bin"), sha256="0" * 64))
    assert "checksum mismatch" in error_text(server, alice.name, "bad.url")
    assert not (server.space(alice.name) / "downloads" / "bad.bin").exists()
    assert "bad.url" in files_in(server.space(alice.name) / "downloads")


@pytest.mark.both_databases
def test_a_permanent_http_error_leaves_the_trigger_and_an_error_file(server, alice, origin):
    for status in (404, 403, 410):
        origin.add(f"/gone{status}", b"", status=status)
        alice.session.put(server.dav(f"downloads/gone{status}.url"), data=url_shortcut(origin.url(f"/gone{status}")))
        assert f"HTTP {status}" in error_text(server, alice.name, f"gone{status}.url")
        assert f"gone{status}.url" in files_in(server.space(alice.name) / "downloads")
        assert f"HTTP {status}" in alice.session.get(server.dav("downloads/fetchdrive-status.txt")).text


def test_uploading_the_trigger_again_retries_and_clears_the_error(server, alice, origin):
    origin.add("/later.bin", b"", status=404)
    alice.session.put(server.dav("downloads/later.url"), data=url_shortcut(origin.url("/later.bin")))
    error_text(server, alice.name, "later.url")
    origin.add("/later.bin", b"now it exists")
    alice.session.put(server.dav("downloads/later.url"), data=url_shortcut(origin.url("/later.bin")))
    assert delivered(server, alice.name, "later.bin") == b"now it exists"
    wait_for(lambda: "later.url.error.txt" not in files_in(server.space(alice.name) / "downloads"), message="error removed")


@pytest.mark.both_databases
def test_deleting_the_trigger_cancels_and_frees_temporary_data(server, alice, origin):
    origin.add("/endless.bin", BODY * 8, rate=128 * 1024)
    alice.session.put(server.dav("downloads/cancel.url"), data=url_shortcut(origin.url("/endless.bin")))
    wait_for(lambda: temp_downloads(server.data), message="a temporary file")
    assert alice.session.delete(server.dav("downloads/cancel.url")).status_code == 204
    wait_for(lambda: not temp_downloads(server.data), message="temporary data freed")
    assert "endless.bin.part" not in listing(server, alice)
    assert not (server.space(alice.name) / "downloads" / "endless.bin").exists()


MALFORMED_TRIGGERS = [  # (name, content, what the error file must say)
    ("binary.url", b"\x00\x01\x02garbage\xff", "binary"),
    ("script.url", b"[InternetShortcut]\nURL=javascript:alert(1)\n", "javascript"),
    ("file.url", b"file:///etc/passwd\n", "file:"),
    ("huge.url", b"#" * (70 * 1024), "too large"),
    ("app.desktop", b"[Desktop Entry]\nType=Application\nExec=rm -rf /\n", "Link"),
    ("broken.webloc", b"<?xml version='1.0'?><plist><dict><key>URL", "webloc"),
]


def test_malformed_triggers_get_a_precise_error_file(server, alice):
    for name, content, reason in MALFORMED_TRIGGERS:
        assert alice.session.put(server.dav(f"downloads/{name}"), data=content).status_code == 201
        assert reason.lower() in error_text(server, alice.name, name).lower(), name
        assert alice.session.get(server.dav()).status_code == 200


def test_an_empty_trigger_waits_for_its_content(server, alice, origin):
    origin.add("/two-step.bin", b"finder style")
    assert alice.session.put(server.dav("downloads/step.url"), data=b"").status_code == 201
    assert "step.url.error.txt" not in files_in(server.space(alice.name) / "downloads")
    alice.session.put(server.dav("downloads/step.url"), data=url_shortcut(origin.url("/two-step.bin")))
    assert delivered(server, alice.name, "two-step.bin") == b"finder style"


def test_a_locked_trigger_is_acted_on_at_unlock(server, alice, origin):
    origin.add("/locked.bin", b"after unlock")
    lock = alice.session.request(
        "LOCK", server.dav("downloads/locked.url"),
        data='<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
        "<D:locktype><D:write/></D:locktype></D:lockinfo>",
    )
    token = lock.headers["Lock-Token"]
    alice.session.put(server.dav("downloads/locked.url"), data=url_shortcut(origin.url("/locked.bin")), headers={"If": f"({token})"})
    time.sleep(1)
    assert origin.count("/locked.bin") == 0
    alice.session.request("UNLOCK", server.dav("downloads/locked.url"), headers={"Lock-Token": token})
    assert delivered(server, alice.name, "locked.bin") == b"after unlock"


def test_renaming_a_new_file_into_a_trigger_name_starts_it(server, alice, origin):
    origin.add("/renamed.bin", b"explorer style")
    alice.session.put(server.dav("downloads/New Text Document.txt"), data=url_shortcut(origin.url("/renamed.bin")))
    assert alice.session.request(
        "MOVE", server.dav("downloads/New Text Document.txt"), headers={"Destination": "/dav/downloads/go.url"}
    ).status_code == 201
    assert delivered(server, alice.name, "renamed.bin") == b"explorer style"


def test_copying_a_trigger_into_downloads_starts_it(server, alice, origin):
    origin.add("/copied.bin", b"copied trigger")
    alice.session.put(server.dav("saved.url"), data=url_shortcut(origin.url("/copied.bin")))
    assert origin.count("/copied.bin") == 0
    alice.session.request("COPY", server.dav("saved.url"), headers={"Destination": "/dav/downloads/saved.url"})
    assert delivered(server, alice.name, "copied.bin") == b"copied trigger"


def test_os_junk_files_are_not_triggers(server, alice):
    assert alice.session.put(server.dav("downloads/._x.url"), data=b"\x00\x05\x16\x07junk").status_code == 201
    time.sleep(1)
    assert "._x.url.error.txt" not in files_in(server.space(alice.name) / "downloads")


def test_an_unknown_content_id_fails_clearly(server, alice):
    alice.session.put(server.dav("downloads/thing.id"), data=b"no-such-id\n")
    text = error_text(server, alice.name, "thing.id")
    assert "unknown content ID" in text
    assert "fetchdrive catalog" not in text  # an ordinary user cannot run admin commands


@pytest.mark.both_databases
def test_a_download_over_quota_fails_without_a_file(server, alice, origin):
    origin.add("/huge.bin", BODY * 11)
    alice.session.put(server.dav("downloads/huge.url"), data=url_shortcut(origin.url("/huge.bin")))
    text = error_text(server, alice.name, "huge.url")
    assert "not enough space" in text
    assert text.count("upload") == 1 and text.count("free") == 0, text  # the advice is given once
    assert not (server.space(alice.name) / "downloads" / "huge.bin").exists()
    assert temp_downloads(server.data) == []


def test_workers_are_limited_per_user_and_shared_fairly(make_server, origin):
    server = make_server(settings={"engine.workers": 2, "engine.per_user": 1})
    for name in ("ann", "ben"):
        server.add_user(name, f"{name}-password")
    ann, ben = server.session("ann", "ann-password"), server.session("ben", "ben-password")
    paced = [origin.add(f"/ann{number}", b"a" * (512 * 1024), rate=256 * 1024) for number in range(3)]
    for number in range(3):
        ann.post(server.url("/api/v1/tasks"), json={"url": origin.url(f"/ann{number}")})
    paced.append(origin.add("/ben", b"b" * (512 * 1024), rate=256 * 1024))
    ben.post(server.url("/api/v1/tasks"), json={"url": origin.url("/ben")})

    def states(session) -> list[str]:
        return [task["state"] for task in session.get(server.url("/api/v1/tasks")).json()]

    wait_for(lambda: states(ben) == ["downloading"], message="ben's task running beside ann's")
    assert states(ann).count("downloading") == 1 and states(ann).count("queued") == 2
    for resource in paced:  # the pace was for the look above; the rest need not wait on it
        resource.rate = None
    wait_for(lambda: states(ann) == ["done"] * 3 and states(ben) == ["done"], timeout=30, message="all done")
