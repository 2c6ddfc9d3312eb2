"""BitTorrent (SPEC 4b) end to end: a real libtorrent seeder on loopback, DHT off, and the real
server fetching from it through `.torrent` triggers, magnet links and the API."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import libtorrent as lt
import pytest

from engine.triggers import TriggerError, parse_trigger
from tests.conftest import new_account
from tests.downloads_helpers import files_in, temp_downloads, url_shortcut, wait_for
from tests.test_client_commands import client
from tests.torrent_seeder import Seeder

# The shared server's finished triggers linger 0.2 s, not 1: no client here reads its upload
# back, and tests wait for them to go.
pytestmark = pytest.mark.shared_server(settings={"engine.trigger_linger": 0.2})
BIG = os.urandom(3 * 1024 * 1024)


def new_pack() -> dict[str, bytes]:
    """A multi-file torrent's content, new for each test: the shared server's store must not
    already hold it from an earlier test."""
    return {"a.bin": os.urandom(300_000), "sub/b.txt": b"hello\n" * 1000, "sub/deeper/c.dat": os.urandom(70_000),
            "empty": b""}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def seeder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeder]:
    running = Seeder(tmp_path_factory.mktemp("seeder"))
    yield running
    running.stop()


def delivered(server, user: str, rel: str, timeout: float = 60) -> Path:
    path = server.space(user) / rel
    wait_for(path.exists, timeout=timeout, message=rel)
    return path


def error_text(server, user: str, trigger: str, timeout: float = 60) -> str:
    path = server.space(user) / "downloads" / f"{trigger}.error.txt"
    wait_for(path.exists, timeout=timeout, message=f"{trigger}.error.txt")
    return path.read_text()


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_magnet_link_delivers_a_multi_file_torrent_as_one_folder(server, alice, seeder):
    pack = new_pack()
    shared = seeder.share("pack", pack)
    alice.session.put(server.dav("downloads/pack.url"), data=url_shortcut(shared.magnet))
    folder = delivered(server, alice.name, "downloads/pack")
    assert tree(folder) == pack
    wait_for(lambda: "pack.url" not in files_in(server.space(alice.name) / "downloads"), message="trigger removed")
    wait_for(lambda: temp_downloads(server.data) == [], message="temporary data freed")
    task = alice.session.get(server.base_url + "/api/v1/tasks").json()[0]
    assert task["state"] == "done" and task["path"] == "downloads/pack" and task["bytes_done"] == sum(map(len, pack.values()))


def test_a_torrent_file_delivers_its_single_file_into_the_triggers_folder(server, alice, seeder):
    session = alice.session
    shared = seeder.share("big.iso", BIG)
    session.request("MKCOL", server.dav("downloads/isos/"))
    assert session.put(server.dav("downloads/isos/big.torrent"), data=shared.metainfo).status_code == 201
    assert delivered(server, alice.name, "downloads/isos/big.iso").read_bytes() == BIG
    wait_for(lambda: "big.torrent" not in files_in(server.space(alice.name) / "downloads/isos"), message="trigger removed")


def test_progress_shows_in_the_placeholder_and_the_api_and_cancel_frees_everything(server, alice, seeder):
    shared = seeder.share("slow.bin", BIG, upload_rate=400_000)
    alice.session.put(server.dav("downloads/slow.url"), data=url_shortcut(shared.magnet))

    def running_task():
        tasks = alice.session.get(server.base_url + "/api/v1/tasks").json()
        return tasks if tasks and tasks[0]["bytes_done"] > 0 else None

    task = wait_for(running_task, timeout=60, message="progress")[0]
    assert task["state"] == "downloading" and task["bytes_total"] == len(BIG)
    assert task["torrent"]["peers"] >= 1 and task["torrent"]["seeds"] >= 1
    listing = alice.session.request("PROPFIND", server.dav("downloads/"), headers={"Depth": "1"}).text
    assert "slow.bin.part" in listing
    assert alice.session.delete(server.dav("downloads/slow.url")).status_code == 204
    wait_for(lambda: alice.session.get(server.base_url + f"/api/v1/tasks/{task['id']}").json()["state"] == "cancelled",
             message="cancelled")
    wait_for(lambda: temp_downloads(server.data) == [], message="temporary data freed")
    assert not (server.space(alice.name) / "downloads/slow.bin").exists()


def test_the_api_takes_a_magnet_link(server, alice, seeder):
    shared = seeder.share("api.bin", b"from the api " * 5000)
    answer = alice.session.post(server.base_url + "/api/v1/tasks", json={"url": shared.magnet})
    assert answer.status_code == 201, answer.text
    assert delivered(server, alice.name, "downloads/api.bin").read_bytes() == b"from the api " * 5000


def test_a_torrent_over_the_quota_fails_as_soon_as_its_size_is_known(server, bob, seeder):
    shared = seeder.share("huge", {"one.bin": os.urandom(6_000_000), "two.bin": os.urandom(6_000_000)})
    bob.session.put(server.dav("downloads/huge.url"), data=url_shortcut(shared.magnet))
    assert "quota" in error_text(server, bob.name, "huge.url")
    assert not (server.space(bob.name) / "downloads/huge").exists()
    wait_for(lambda: temp_downloads(server.data) == [], message="temporary data freed")


def test_the_same_torrent_for_another_user_comes_from_the_store_without_the_swarm(server, alice, bob, seeder):
    pack = new_pack()
    shared = seeder.share("pack", pack)
    alice.session.put(server.dav("downloads/pack.url"), data=url_shortcut(shared.magnet))
    delivered(server, alice.name, "downloads/pack/sub/b.txt")
    seeder.session.remove_torrent(shared.handle)  # no swarm is left
    bob.session.put(server.dav("downloads/same.url"), data=url_shortcut(shared.magnet))
    folder = delivered(server, bob.name, "downloads/pack", timeout=20)
    assert tree(folder) == pack
    task = bob.session.get(server.base_url + "/api/v1/tasks").json()[0]
    assert task["state"] == "done" and task["instant"] is True
    used = bob.session.get(server.base_url + "/api/v1/me").json()["used_bytes"]
    assert used >= sum(map(len, pack.values()))
    # Bob's copy is his own: replacing a file there leaves Alice's alone.
    bob.session.put(server.dav("downloads/pack/sub/b.txt"), data=b"bob's now")
    assert (server.space(alice.name) / "downloads/pack/sub/b.txt").read_bytes() == pack["sub/b.txt"]


# A magnet nobody answers runs into its metadata's time-out before the stall's, which a torrent
# whose metadata a `.torrent` file brings runs into.
NO_PEER = {"engine.torrent.metadata_timeout": 1, "engine.torrent.stall_timeout": 2}


def test_a_magnet_nobody_answers_fails_with_a_clear_reason(shared_servers):
    server = shared_servers(NO_PEER)
    carol = new_account(server, "carol", "carol-password")
    carol.session.put(server.dav("downloads/lonely.url"), data=url_shortcut("magnet:?xt=urn:btih:" + "ab" * 20))
    assert "metadata" in error_text(server, carol.name, "lonely.url")


def test_a_torrent_without_peers_fails_after_the_stall_timeout(shared_servers, seeder):
    server = shared_servers(NO_PEER)
    wait_for(lambda: temp_downloads(server.data) == [], message="earlier tests' temporary data freed")
    carol = new_account(server, "carol", "carol-password")
    shared = seeder.share("alone.bin", b"a" * 50_000, trackers=())  # nothing tells the server of the seeder
    carol.session.put(server.dav("downloads/alone.torrent"), data=shared.metainfo)
    assert "no peer was reachable for 2 s" in error_text(server, carol.name, "alone.torrent")
    assert temp_downloads(server.data) == []


@pytest.mark.parametrize("allowlist, arrives", [([], False), (["127.0.0.1/32"], True)])
def test_private_peers_are_refused_unless_allowed(make_server, seeder, allowlist, arrives):
    server = make_server(settings={"engine.allow_private_networks": False, "engine.private_allowlist": allowlist,
                                   "engine.torrent.metadata_timeout": 60 if arrives else 4})
    server.add_user("dave", "dave-password", quota="10M")
    session = server.session("dave", "dave-password")
    shared = seeder.share("private.bin", b"p" * 100_000)
    session.put(server.dav("downloads/private.url"), data=url_shortcut(shared.magnet))
    if arrives:
        assert delivered(server, "dave", "downloads/private.bin").read_bytes() == b"p" * 100_000
    else:
        assert "metadata" in error_text(server, "dave", "private.url")
        assert shared.uploaded() == 0


def _bencode(value) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(map(_bencode, value)) + b"e"
    return b"d" + b"".join(_bencode(k) + _bencode(v) for k, v in sorted(value.items())) + b"e"


def _multi(paths: list[list[bytes]], name: bytes = b"top") -> bytes:
    files = [{b"length": 1, b"path": path} for path in paths]
    pieces = b"\0" * 20 * max(1, (len(files) + 16383) // 16384)
    return _bencode({b"info": {b"name": name, b"files": files, b"piece length": 16384, b"pieces": pieces}})


HOSTILE = [
    ("nesting bomb", b"l" * 50_000 + b"e" * 50_000, "not a valid torrent"),
    ("random bytes", os.urandom(5000), "not a valid torrent"),
    ("no piece length", b"d4:infod4:name1:xee", "not a valid torrent"),
    ("dot-dot", _multi([[b"..", b"passwd"]]), "leave its folder"),
    ("absolute", _multi([[b"/etc", b"passwd"]]), "leave its folder"),
    ("NUL", _multi([[b"a\0b"]]), "leave its folder"),
    ("dot-dot name", _multi([[b"x"]], name=b".."), "leave its folder"),
    ("too many files", _multi([[b"f%d" % n] for n in range(10_001)]), "at most 10000"),
]


@pytest.mark.parametrize("label, metainfo, reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_metainfo_gets_a_clear_error_and_writes_nothing(server, alice, label, metainfo, reason):
    wait_for(lambda: temp_downloads(server.data) == [], message="earlier tests' temporary data freed")
    alice.session.put(server.dav("downloads/evil.torrent"), data=metainfo)
    assert reason in error_text(server, alice.name, "evil.torrent", timeout=20)
    assert sorted(files_in(server.space(alice.name) / "downloads")) == ["evil.torrent", "evil.torrent.error.txt"]
    assert temp_downloads(server.data) == []


def test_a_torrent_file_over_16_mib_is_refused_before_parsing():
    with pytest.raises(TriggerError, match="larger than 16 MiB"):
        parse_trigger("big.torrent", b"d4:info" + b"0" * (17 * 1024 * 1024))


def test_a_magnet_without_an_info_hash_is_refused_when_the_trigger_is_read():
    for uri in ("magnet:?dn=nothing", "magnet:?xt=urn:btih:xyz", "magnet:"):
        with pytest.raises(TriggerError, match="magnet link is not valid"):
            parse_trigger("m.url", uri.encode())


def test_kill_9_mid_download_fetches_no_verified_piece_again(make_server, seeder):
    server = make_server()
    server.add_user("erin", "erin-password", quota="50M")
    session = server.session("erin", "erin-password")
    # The seeder lacks every third piece until the kill: the download cannot end before it.
    shared = seeder.share("resume.bin", BIG, upload_rate=1_000_000, lacking_every=3)
    session.put(server.dav("downloads/resume.url"), data=url_shortcut(shared.magnet))
    wait_for(lambda: shared.uploaded() > len(BIG) // 3, timeout=60, message="a third sent")
    server.kill()
    before = shared.uploaded()
    shared.complete()
    server.start()
    target = delivered(server, "erin", "downloads/resume.bin")
    assert target.read_bytes() == BIG
    # Only what was not yet verified on disk is sent again: at most a few pieces in flight.
    assert shared.uploaded() - before <= len(BIG) - before + 16 * 64 * 1024


def test_fetchdrive_add_takes_a_magnet_link_and_a_local_torrent_file(server, alice, seeder, tmp_path):
    by_magnet = seeder.share("by-magnet.bin", b"m" * 70_000)
    by_file = seeder.share("by-file.bin", b"f" * 70_000)
    (tmp_path / "local.torrent").write_bytes(by_file.metainfo)
    for source in (by_magnet.magnet, str(tmp_path / "local.torrent")):
        result = client("add", source, "--server", server.base_url, "--user", alice.name, password=alice.password)
        assert result.returncode == 0, result.stderr
    assert delivered(server, alice.name, "downloads/by-magnet.bin").read_bytes() == b"m" * 70_000
    assert delivered(server, alice.name, "downloads/by-file.bin").read_bytes() == b"f" * 70_000


def test_seeding_follows_seed_time_then_stops(make_server, seeder, tmp_path):
    port = free_port()
    # Six seconds: the leecher below needs two at most, even at a load of 28 on two cores.
    server = make_server(settings={"engine.torrent.port": port, "engine.torrent.seed_time": 6})
    server.add_user("alice", "alice-password", quota="50M")
    shared = seeder.share("shared.bin", BIG)
    server.session("alice", "alice-password").put(server.dav("downloads/s.url"), data=url_shortcut(shared.magnet))
    delivered(server, "alice", "downloads/shared.bin")
    seeder.session.remove_torrent(shared.handle)  # from now on only the server has it
    leecher = Seeder(tmp_path / "leecher")
    try:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(shared.metainfo)
        params.save_path = str(leecher.folder)
        handle = leecher.session.add_torrent(params)
        deadline = time.monotonic() + 15
        while not handle.status().is_seeding and time.monotonic() < deadline:
            handle.connect_peer(("127.0.0.1", port))
            time.sleep(0.1)
        assert (leecher.folder / "shared.bin").read_bytes() == BIG
    finally:
        leecher.stop()
    wait_for(lambda: not (server.data / "tmp" / "downloads" / "seeding").exists()
             or not any((server.data / "tmp" / "downloads" / "seeding").iterdir()), timeout=60, message="seeding stopped")
