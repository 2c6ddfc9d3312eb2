"""Content IDs and instant transfer: the catalog, sha256: IDs, mirrors, and the deduplicating store."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator

import pytest

from tests.conftest import new_account
from tests.downloads_helpers import files_in, url_shortcut, wait_for
from tests.origin import Origin
from tests.server_process import ServerProcess

CONTENT = os.urandom(2 * 1024 * 1024)
DIGEST = hashlib.sha256(CONTENT).hexdigest()


def delivered(server, user: str, name: str) -> bytes:
    path = server.space(user) / "downloads" / name
    wait_for(path.exists, message=name)
    return path.read_bytes()


def error_text(server, user: str, trigger: str) -> str:
    path = server.space(user) / "downloads" / f"{trigger}.error.txt"
    wait_for(path.exists, message=f"{trigger}.error.txt")
    return path.read_text()


def task_list(account, server) -> list[dict]:
    return account.session.get(server.url("/api/v1/tasks")).json()


def store_objects(server) -> list:
    return [p for p in (server.data / "store").rglob("*") if p.is_file()]


@pytest.mark.shared_server
def test_an_id_resolves_through_the_catalog_with_its_checksum_and_name(server, alice, origin):
    origin.add("/iso", CONTENT)
    server.command("catalog", "add", "distro-1", origin.url("/iso"), "--sha256", DIGEST, "--filename", "distro.iso")
    alice.session.put(server.dav("downloads/get.id"), data=b"distro-1\n")
    assert delivered(server, alice.name, "distro.iso") == CONTENT


@pytest.mark.shared_server
def test_a_catalog_checksum_mismatch_fails_and_leaves_no_file(server, alice, origin):
    origin.add("/tampered", CONTENT)
    server.command("catalog", "add", "tampered", origin.url("/tampered"), "--sha256", "1" * 64, "--filename", "t.bin")
    alice.session.put(server.dav("downloads/t.id"), data=b"tampered\n")
    assert "checksum mismatch" in error_text(server, alice.name, "t.id")
    assert not (server.space(alice.name) / "downloads" / "t.bin").exists()


def test_the_config_catalog_is_loaded_at_start(make_server, origin):
    origin.add("/from-config", b"configured")
    server = make_server(settings={"catalog": [{"id": "cfg", "url": origin.url("/from-config"), "filename": "cfg.txt"}]})
    server.add_user("alice", "alice-password")
    server.session("alice", "alice-password").put(server.dav("downloads/c.id"), data=b"cfg")
    assert delivered(server, "alice", "cfg.txt") == b"configured"


@pytest.mark.shared_server
def test_two_users_fetching_one_url_cost_one_transfer_and_one_copy_on_disk(server, alice, bob, origin):
    content = os.urandom(len(CONTENT))  # bytes of its own: the link count below is this test's alone
    origin.add("/shared.bin", content)
    alice.session.put(server.dav("downloads/s.url"), data=url_shortcut(origin.url("/shared.bin")))
    assert delivered(server, alice.name, "shared.bin") == content
    bob.session.put(server.dav("downloads/s.url"), data=url_shortcut(origin.url("/shared.bin")))
    assert delivered(server, bob.name, "shared.bin") == content
    assert origin.bytes_sent("/shared.bin") == len(content)
    alice_file = server.space(alice.name) / "downloads" / "shared.bin"
    bob_file = server.space(bob.name) / "downloads" / "shared.bin"
    assert alice_file.stat().st_ino == bob_file.stat().st_ino and alice_file.stat().st_nlink == 3
    bob_task = wait_for(lambda: [t for t in task_list(bob, server) if t["state"] == "done"], message="bob's task")[0]
    assert bob_task["instant"] is True
    for account in (alice, bob):  # once the trigger has lingered and gone
        wait_for(lambda: account.session.get(server.url("/api/v1/me")).json()["used_bytes"] == len(content),
                 message=f"{account.name}'s quota counts the file alone")
    # One user overwrites their copy: the other's is unchanged.
    assert alice.session.put(server.dav("downloads/shared.bin"), data=b"mine now").status_code == 204
    assert bob_file.read_bytes() == content
    assert alice.session.get(server.dav("downloads/shared.bin")).content == b"mine now"


@pytest.mark.shared_server
def test_a_changed_origin_is_downloaded_again_not_served_from_cache(server, alice, bob, origin):
    origin.add("/changing", CONTENT)
    alice.session.put(server.dav("downloads/a.url"), data=url_shortcut(origin.url("/changing")))
    delivered(server, alice.name, "changing")
    origin.change("/changing", b"new version")
    bob.session.put(server.dav("downloads/a.url"), data=url_shortcut(origin.url("/changing")))
    assert delivered(server, bob.name, "changing") == b"new version"


@pytest.fixture(scope="module")
def mirror_origin() -> Iterator[Origin]:
    """The origin of the file's mirror server: its `engine.mirrors` names this one."""
    with Origin() as running:
        yield running


@pytest.fixture
def mirrored(shared_servers, mirror_origin: Origin) -> ServerProcess:
    """One server for the file's tests of mirrors, with users and content of each test's own."""
    return shared_servers({"engine.mirrors": [mirror_origin.url("/mirror/{sha256}")]})


def content_of_its_own(size: int = len(CONTENT)) -> tuple[bytes, str]:
    """Bytes no other test stores on the shared server, and their SHA-256."""
    content = os.urandom(size)
    return content, hashlib.sha256(content).hexdigest()


def test_a_stored_sha256_id_that_a_mirror_confirms_completes_without_a_transfer(mirrored, mirror_origin):
    server, origin = mirrored, mirror_origin
    content, digest = content_of_its_own()
    origin.add("/blob", content)
    origin.add(f"/mirror/{digest}", content)
    alice, bob = (new_account(server, user, f"{user}-password") for user in ("alice", "bob"))
    alice.session.put(server.dav("downloads/b.url"), data=url_shortcut(origin.url("/blob")))
    delivered(server, alice.name, "blob")
    bob.session.put(server.dav("downloads/copy.id"), data=f"sha256:{digest}\nfilename=copy.bin\n".encode())
    assert delivered(server, bob.name, "copy.bin") == content
    assert [(r.method, r.range) for r in origin.requests if r.path == f"/mirror/{digest}"] == [("GET", "bytes=0-4095")]


def test_an_absent_sha256_id_is_fetched_from_a_mirror_and_verified(mirrored, mirror_origin):
    server, origin = mirrored, mirror_origin
    content, digest = content_of_its_own()
    origin.add(f"/mirror/{digest}", content)
    origin.add(f"/bad-mirror/{'2' * 64}", b"wrong bytes")
    alice = new_account(server, "alice", "alice-password")
    alice.session.put(server.dav("downloads/m.id"), data=f"sha256:{digest}\nfilename=m.bin\n".encode())
    assert delivered(server, alice.name, "m.bin") == content
    alice.session.put(server.dav("downloads/missing.id"), data=f"sha256:{'3' * 64}\n".encode())
    assert "no mirror had content" in error_text(server, alice.name, "missing.id")


@pytest.mark.shared_server
def test_a_sha256_id_without_store_or_mirror_fails_clearly(server, alice):
    alice.session.put(server.dav("downloads/x.id"), data=f"sha256:{'4' * 64}\n".encode())
    assert "no mirror is configured" in error_text(server, alice.name, "x.id")


def test_gc_removes_stored_content_nobody_uses(server, alice, origin):
    origin.add("/temp.bin", CONTENT)
    alice.session.put(server.dav("downloads/t.url"), data=url_shortcut(origin.url("/temp.bin")))
    delivered(server, alice.name, "temp.bin")
    wait_for(lambda: len(store_objects(server)) == 1, message="the download filed in the store")
    assert server.command("gc").startswith("removed 0")
    alice.session.delete(server.dav("downloads/temp.bin"))
    assert server.command("gc").startswith("removed 1")
    assert store_objects(server) == []
    wait_for(lambda: files_in(server.space(alice.name) / "downloads") == [], message="the trigger gone too")


def test_the_same_bytes_from_two_urls_are_kept_once(server, alice, origin):
    origin.add("/one.bin", CONTENT)
    origin.add("/two.bin", CONTENT)
    for name in ("one", "two"):
        alice.session.put(server.dav(f"downloads/{name}.url"), data=url_shortcut(origin.url(f"/{name}.bin")))
        assert delivered(server, alice.name, f"{name}.bin") == CONTENT
    wait_for(lambda: all(t["sha256"] == DIGEST for t in task_list(alice, server)), message="both filed")
    one, two = (server.space(alice.name) / "downloads" / name for name in ("one.bin", "two.bin"))
    assert one.stat().st_ino == two.stat().st_ino
    assert len(store_objects(server)) == 1 and store_objects(server)[0].stat().st_ino == one.stat().st_ino
    wait_for(lambda: alice.session.get(server.url("/api/v1/me")).json()["used_bytes"] == 2 * len(CONTENT),
             message="the quota counts both files, once the triggers have gone")


def test_a_download_published_but_not_yet_filed_when_the_server_died_is_filed_at_the_next_start(server, alice, origin):
    # The state a kill -9 leaves between a file appearing and its hash being stored: the task
    # is done without a digest, the store lacks the object, the temporary link still exists.
    origin.add("/crash.bin", CONTENT)
    alice.session.put(server.dav("downloads/c.url"), data=url_shortcut(origin.url("/crash.bin")))
    assert delivered(server, alice.name, "crash.bin") == CONTENT
    task_id = wait_for(lambda: [t["id"] for t in task_list(alice, server) if t["sha256"]], message="filed")[0]
    server.stop()
    published = server.space(alice.name) / "downloads" / "crash.bin"
    (stored,) = store_objects(server)
    stored.unlink()
    temp = server.data / "tmp" / "downloads" / f"{task_id}.part"
    os.link(published, temp)
    with sqlite3.connect(server.data / "fetchdrive.sqlite") as database:
        database.execute("update tasks set sha256 = null where id = ?", [task_id])
    server.start()
    wait_for(lambda: task_list(alice, server)[0]["sha256"] == DIGEST, message="filed after the restart")
    wait_for(lambda: not temp.exists(), message="temporary link removed")
    assert [p.stat().st_ino for p in store_objects(server)] == [published.stat().st_ino]
    assert published.read_bytes() == CONTENT


def test_an_instant_delivery_linked_just_before_a_kill_9_is_not_published_again(make_server, origin):
    # The state a kill -9 leaves between an instant delivery's link of the stored file into the
    # folder and its task being marked done (test_download_faults has the same for a transfer).
    # The stored file is linked elsewhere too, here as the same user's earlier copy beside it:
    # only the name the task was publishing under tells which link is its.
    server = make_server()
    bob = new_account(server, "bob", "bob-password")
    content, _ = content_of_its_own()
    origin.add("/same.bin", content)

    def task_of(trigger: str) -> tuple:
        rows = server.query("SELECT id, state, instant, sha256 FROM tasks WHERE trigger_path = ?", [f"downloads/{trigger}"])
        return rows[0] if rows else (None, None, None, None)

    for trigger, options in (("first.url", {}), ("second.url", {"filename": "copy.bin"})):
        bob.session.put(server.dav(f"downloads/{trigger}"), data=url_shortcut(origin.url("/same.bin"), **options))
        wait_for(lambda: task_of(trigger)[3], message=f"{trigger}'s download filed")
    task_id, _, instant, _ = task_of("second.url")
    assert instant
    downloads = server.space(bob.name) / "downloads"
    wait_for(lambda: files_in(downloads) == ["copy.bin", "same.bin"], message="both copies, the triggers gone")
    server.stop()
    with sqlite3.connect(server.data / "fetchdrive.sqlite") as database:
        database.execute("UPDATE tasks SET state = 'downloading', path = NULL, finished_at = NULL,"
                         " publishing_to = 'downloads/copy.bin' WHERE id = ?", [task_id])
    server.start()
    wait_for(lambda: task_of("second.url")[1] == "done", message="done again")
    assert files_in(downloads) == ["copy.bin", "same.bin"]
    assert server.query("SELECT path, publishing_to FROM tasks WHERE id = ?", [task_id]) == [("downloads/copy.bin", None)]
    assert f"task {task_id}: found published before the server stopped, as copy.bin" in server.log_text()
    wait_for(lambda: bob.session.get(server.url("/api/v1/me")).json()["used_bytes"] == 2 * len(content),
             message="bob's quota counts his two copies")


def test_content_id_downloads_get_sensible_names(mirrored, mirror_origin):
    """The catalog's filename, else the mirror's Content-Disposition or URL name (not a bare
    hash), else the trigger's stem."""
    server, origin = mirrored, mirror_origin
    content, digest = content_of_its_own()
    other, other_digest = content_of_its_own(1024)
    origin.add(f"/mirror/{digest}", content, content_disposition='attachment; filename="debian-12.iso"')
    origin.add(f"/mirror/{other_digest}", other)
    origin.add("/files/fedora-40.iso", b"fedora")
    alice = new_account(server, "alice", "alice-password")
    server.command("catalog", "add", "fedora", origin.url("/files/fedora-40.iso"))
    alice.session.put(server.dav("downloads/linux.id"), data=f"sha256:{digest}\n".encode())
    alice.session.put(server.dav("downloads/holiday photos.id"), data=f"sha256:{other_digest}\n".encode())
    alice.session.put(server.dav("downloads/f.id"), data=b"fedora\n")
    assert delivered(server, alice.name, "debian-12.iso") == content
    assert delivered(server, alice.name, "holiday photos") == other
    assert delivered(server, alice.name, "fedora-40.iso") == b"fedora"
