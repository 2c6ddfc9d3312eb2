"""libtorrent resume data (issue 14, SPEC 4b): a torrent being downloaded keeps `<task>.resume`
beside its data, a restart (even `kill -9`) adds the torrent back from it without hashing the
pieces again and fetches no verified piece twice, a damaged file falls back to checking the
pieces on disk, and cancel removes it with the rest. A real libtorrent seeder on loopback.

Until the server is stopped, the seeder sends each torrent at RATE, so that pieces are in flight
when it stops, and lacks every third piece, so that it has not finished however late the test
acts; then the seeder gets those pieces and sends at full speed. Where the checks allow, one
server downloads several torrents (a user each) and is stopped once for all."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import libtorrent as lt
import pytest

from engine.torrent_metainfo import parse_magnet
from engine.torrent_resume import sealed, unsealed
from tests.downloads_helpers import temp_downloads, url_shortcut, wait_for
from tests.server_process import ServerProcess
from tests.torrent_seeder import PIECE, Seeder, Shared

RATE = 600_000  # bytes a second the seeder sends of each torrent until the server is stopped
LACKING_EVERY = 3  # until then the seeder lacks every third piece: a download stops two thirds in
IN_FLIGHT = 16 * PIECE  # when the server died: pieces sent but not verified, or verified since the last save

SHAPES = {
    "single-file": lambda: os.urandom(3 * 1024 * 1024),
    "multi-file": lambda: {"a.bin": os.urandom(1_500_000), "sub/b.bin": os.urandom(1_200_000),
                           "sub/deeper/c.txt": b"c" * 300_000, "empty": b""},
}


def size(content: bytes | dict[str, bytes]) -> int:
    return len(content) if isinstance(content, bytes) else sum(map(len, content.values()))


def delivered_content(folder: Path, name: str, content: bytes | dict[str, bytes]) -> bytes | dict[str, bytes]:
    target = folder / name
    wait_for(target.exists, timeout=90, message=f"{name} delivered")
    if isinstance(content, bytes):
        return target.read_bytes()
    return {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}


def verified_pieces(resume: Path) -> int:
    """The pieces the server's resume file names as verified (0 while it has none)."""
    try:
        return sum(lt.read_resume_data(unsealed(resume.read_bytes())).have_pieces)
    except FileNotFoundError:
        return 0


class Download:
    """One user's download of a torrent from a slow seeder, and its task's resume file."""

    def __init__(self, server: ServerProcess, seeder: Seeder, shape: str, user: str = "erin") -> None:
        self.server = server
        self.user = server.unused_user_name(user)
        server.add_user(self.user, f"{user}-password", quota="50M")
        self.session = server.session(self.user, f"{user}-password")
        self.name = f"{shape}.bin" if shape == "single-file" else shape
        self.content = SHAPES[shape]()
        self.shared: Shared = seeder.share(self.name, self.content, upload_rate=RATE, lacking_every=LACKING_EVERY)
        self.session.put(server.dav("downloads/t.url"), data=url_shortcut(self.shared.magnet))
        task = wait_for(lambda: self.session.get(server.url("/api/v1/tasks")).json(), message="task")[0]
        self.task_id = task["id"]
        self.resume = server.data / "tmp" / "downloads" / f"{self.task_id}.resume"

    def partly_saved(self) -> Download:
        """Waits until a third of the torrent was sent and the resume file names a verified piece."""
        wait_for(lambda: self.shared.uploaded() > size(self.content) // 3, timeout=60, message="a third sent")
        wait_for(lambda: verified_pieces(self.resume) > 0, timeout=30, message="resume data saved")
        return self

    def assert_completes(self) -> None:
        folder = self.server.space(self.user) / "downloads"
        assert delivered_content(folder, self.name, self.content) == self.content
        wait_for(lambda: temp_downloads(self.server.data) == [], message="temporary data freed")

    def assert_completes_without_fetching_verified_pieces(self) -> None:
        self.assert_completes()
        # Fetched once, but for the pieces in flight when the server died.
        assert self.shared.uploaded() <= size(self.content) + IN_FLIGHT


def partly_saved(server: ServerProcess, seeder: Seeder, shapes: list[str]) -> list[Download]:
    """A download of each shape, each by a user of its own, all at once, each partly saved."""
    downloads = [Download(server, seeder, shape) for shape in shapes]
    return [download.partly_saved() for download in downloads]


def interrupt(server: ServerProcess, how: str, downloads: list[Download]) -> int:
    """Stops the server mid-download ("kill": SIGKILL; "stop": SIGTERM, which saves once more),
    then lets the seeder send all of each torrent; returns where the next run's log will start."""
    getattr(server, how)()
    for download in downloads:
        download.shared.complete()
    return len(server.log_text())


@pytest.fixture(scope="module")
def seeder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeder]:
    running = Seeder(tmp_path_factory.mktemp("seeder"))
    yield running
    running.stop()


@pytest.mark.parametrize("stop", ["kill", "stop"])
def test_a_restart_resumes_from_the_resume_data_without_checking_the_pieces_again(make_server, seeder, stop):
    server = make_server()
    downloads = partly_saved(server, seeder, list(SHAPES))
    offset = interrupt(server, stop, downloads)
    saved = [verified_pieces(download.resume) for download in downloads]
    assert all(saved)
    server.start()
    for download in downloads:
        download.assert_completes_without_fetching_verified_pieces()
    # libtorrent was given the saved pieces as verified: it did not read and hash them again.
    log = server.log_text()[offset:]
    for download, pieces in zip(downloads, saved):
        assert f"torrent {download.shared.info_hash}: resumed from its resume data with {pieces} verified pieces" in log
    assert "checking the pieces on disk" not in log


def test_torrents_downloading_at_once_each_keep_their_own_resume_data(make_server, seeder):
    server = make_server()
    downloads = [Download(server, seeder, shape, user) for shape, user in (("single-file", "erin"), ("multi-file", "frank"))]
    for download in downloads:
        download.partly_saved()
    offset = interrupt(server, "kill", downloads)
    saved = {}
    for download in downloads:
        resume = lt.read_resume_data(unsealed(download.resume.read_bytes()))
        assert str(resume.info_hashes.v1) == download.shared.info_hash
        saved[download.shared.info_hash] = sum(resume.have_pieces)
    server.start()
    for download in downloads:
        download.assert_completes_without_fetching_verified_pieces()
    log = server.log_text()[offset:]
    for info_hash, pieces in saved.items():
        assert f"torrent {info_hash}: resumed from its resume data with {pieces} verified pieces" in log


def _another_torrents_resume_data(_blob: bytes) -> bytes:
    params = parse_magnet("magnet:?xt=urn:btih:" + hashlib.sha1(b"another torrent").hexdigest())
    return sealed(lt.write_resume_data_buf(params))


def _flip_a_bit(blob: bytes) -> bytes:
    middle = len(blob) // 2
    return blob[:middle] + bytes([blob[middle] ^ 1]) + blob[middle + 1:]


DAMAGE: list[tuple[str, str, Callable[[bytes], bytes], str]] = [
    ("truncated", "multi-file", lambda blob: blob[: len(blob) // 2], "unreadable"),
    ("a flipped bit", "single-file", _flip_a_bit, "unreadable"),
    ("another torrent's", "single-file", _another_torrents_resume_data, "another torrent's"),
]


def test_a_damaged_resume_file_falls_back_to_checking_the_pieces_on_disk(make_server, seeder):
    server = make_server()
    downloads = partly_saved(server, seeder, [shape for _, shape, _, _ in DAMAGE])
    offset = interrupt(server, "kill", downloads)
    for download, (_, _, transform, _) in zip(downloads, DAMAGE):
        download.resume.write_bytes(transform(download.resume.read_bytes()))
    server.start()
    # The pieces on disk are found by hashing them: none is fetched again, none is trusted unseen.
    for download in downloads:
        download.assert_completes_without_fetching_verified_pieces()
    log = server.log_text()[offset:]
    for download, (damage, _, _, reason) in zip(downloads, DAMAGE):
        assert f"torrent {download.shared.info_hash}: its resume data is {reason}" in log, damage
    assert "resumed from its resume data" not in log


@pytest.mark.shared_server
@pytest.mark.parametrize("shape", SHAPES)
def test_cancel_removes_the_resume_file_with_the_rest(server, seeder, shape):
    download = Download(server, seeder, shape).partly_saved()
    assert download.session.delete(server.dav("downloads/t.url")).status_code == 204
    wait_for(lambda: download.session.get(server.url(f"/api/v1/tasks/{download.task_id}")).json()["state"] == "cancelled",
             message="cancelled")
    wait_for(lambda: temp_downloads(server.data) == [], message="temporary data, resume file included, freed")
    assert not download.resume.exists()


def test_data_cut_short_after_the_resume_data_was_saved_is_checked_not_trusted(make_server, seeder):
    server = make_server()
    downloads = partly_saved(server, seeder, list(SHAPES))
    offset = interrupt(server, "kill", downloads)
    for download in downloads:
        data = server.data / "tmp" / "downloads" / f"{download.task_id}.bt" / download.name
        first = data if data.is_file() else data / "a.bin"
        with open(first, "r+b") as cut:
            cut.truncate(PIECE // 2)
    server.start()
    for download in downloads:
        download.assert_completes()  # the cut pieces fetched again, not delivered as zeros
    log = server.log_text()[offset:]
    for download in downloads:
        assert f"torrent {download.shared.info_hash}: its data on disk is shorter" in log


@pytest.mark.parametrize("shape", SHAPES)
def test_a_torrent_published_just_before_a_kill_9_is_not_published_again(make_server, seeder, shape):
    # The state a kill -9 leaves between a torrent's link (one file) or move (a folder) into
    # downloads/ and its task being marked done, as test_download_faults builds it for HTTP:
    # the data where the swarm left it, one with what was published, its metadata known, the
    # task still downloading, nothing shelved yet. The restart checks the pieces, finds them
    # all, and must find the torrent published rather than publish it again beside itself.
    server = make_server()
    download = Download(server, seeder, shape)
    download.shared.complete()
    download.assert_completes()
    shelved = server.data / "torrents" / f"{download.shared.info_hash}.json"
    wait_for(shelved.exists, message="the torrent shelved")
    server.stop()
    downloads = server.space(download.user) / "downloads"
    published, temp = downloads / download.name, server.data / "tmp" / "downloads"
    (temp / f"{download.task_id}.torrent").write_bytes(download.shared.metainfo)
    files = [published] if published.is_file() else [path for path in published.rglob("*") if path.is_file()]
    for file in files:
        target = temp / f"{download.task_id}.bt" / download.name / file.relative_to(published)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(file, target)
    shelved.unlink()
    with sqlite3.connect(server.data / "fetchdrive.sqlite") as database:
        database.execute("UPDATE tasks SET state = 'downloading', path = NULL, sha256 = NULL, finished_at = NULL"
                         " WHERE id = ?", [download.task_id])
    server.start()
    wait_for(lambda: download.session.get(server.url(f"/api/v1/tasks/{download.task_id}")).json()["state"] == "done",
             message="done again")
    download.assert_completes()
    wait_for(lambda: sorted(os.listdir(downloads)) == [download.name], message="it alone, its trigger gone")
    assert f"task {download.task_id}: found published before the server stopped, as {download.name}" in server.log_text()
