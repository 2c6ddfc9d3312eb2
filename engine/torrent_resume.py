"""libtorrent's resume data for the torrents being downloaded, kept in `<task>.resume` beside the
metadata file, so that a restart, even `kill -9`, neither fetches verified pieces again nor reads
and hashes the whole download to find them (SPEC 4b).

Saved: soon after pieces are verified (at most every SAVE_GAP seconds, so a fast download does
not rewrite the file for each piece), every SAVE_EVERY seconds if anything else changed, and when
the torrent stops. A stopping torrent is paused first and waited for: libtorrent answers a pause
once its disk writes are done and its files closed, so the last save names every piece written,
and nothing writes into the task's temporary data after `stop` returns (a cancel deletes it
then, and a late write would make a file again). libtorrent flushes its disk cache before it answers, so the file names no piece
that is not on disk; the file is written under a temporary name, fsynced and renamed, so a crash
leaves the old file or the new one, never a torn one. It ends in the SHA-256 of what precedes
(`sealed`): libtorrent trusts the pieces resume data names without hashing them, so a flipped
bit must not pass for a verified piece. A piece verified between the last save and a crash is
fetched again: at most SAVE_GAP's worth.

Read (`resumed_params`): the torrent is added back with the pieces the file names as verified.
A missing file, one whose seal does not match or that libtorrent cannot read, one that describes
another torrent, one without the torrent's metadata saved beside it, and one that names pieces
of a data file now shorter than them (libtorrent would deliver the gap as zeros) is ignored:
libtorrent then checks the pieces on disk, as it did before resume data existed (slower, never
wrong), and the task goes on.

One thread per session takes libtorrent's alerts (`ResumeSaver`): alerts are the session's, not a
torrent's, so the workers that follow torrents cannot each take their own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt

SAVE_GAP = 0.25
SAVE_EVERY = 10.0
STOP_WAIT = 5.0  # seconds a stopping torrent waits for its disk writes, and again for its last save

_log = logging.getLogger(__name__)


class DamagedResumeData(Exception):
    pass


def sealed(data: bytes) -> bytes:
    return data + hashlib.sha256(data).digest()


def unsealed(blob: bytes) -> bytes:
    data, seal = blob[:-32], blob[-32:]
    if len(seal) < 32 or hashlib.sha256(data).digest() != seal:
        raise DamagedResumeData("its checksum does not match")
    return data


def resumed_params(params: lt.add_torrent_params, path: Path, save_dir: Path) -> lt.add_torrent_params:
    """`params` (a magnet's, with the torrent's metadata if it is known) with the verified pieces
    that the resume file `path` names, if it is intact, of the same torrent and the data under
    `save_dir` still holds them; else `params` themselves, which make libtorrent check the
    pieces on disk."""
    info_hash = str(params.info_hashes.get_best())
    try:
        resumed = lt.read_resume_data(unsealed(path.read_bytes()))
    except FileNotFoundError:
        return params
    except (OSError, RuntimeError, DamagedResumeData) as error:
        _log.warning("torrent %s: its resume data is unreadable (%s); checking the pieces on disk", info_hash, error)
        return params
    if resumed.info_hashes != params.info_hashes:
        _log.warning("torrent %s: its resume data is another torrent's; checking the pieces on disk", info_hash)
        return params
    if params.ti is None:
        return params
    if _cut_short(params.ti, resumed.have_pieces, save_dir):
        _log.warning("torrent %s: its data on disk is shorter than the pieces its resume data names; "
                     "checking the pieces on disk", info_hash)
        return params
    resumed.ti = params.ti
    resumed.peers = list(resumed.peers) + list(params.peers)
    _log.info("torrent %s: resumed from its resume data with %d verified pieces", info_hash, sum(resumed.have_pieces))
    return resumed


def _cut_short(info: lt.torrent_info, have: list[bool], save_dir: Path) -> bool:
    """Whether a file ends before the last piece in it that `have` names as verified."""
    layout, piece = info.files(), info.piece_length()
    for index in range(layout.num_files()):
        offset, size = layout.file_offset(index), layout.file_size(index)
        if not size or layout.file_flags(index) & lt.file_storage.flag_pad_file:
            continue
        held = [p for p in range(offset // piece, (offset + size - 1) // piece + 1) if p < len(have) and have[p]]
        if not held:
            continue
        try:
            length = (save_dir / layout.file_path(index)).stat().st_size
        except FileNotFoundError:
            length = 0
        if length < min(size, (held[-1] + 1) * piece - offset):
            return True
    return False


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


@dataclass
class _Kept:
    path: Path
    asked: int = 0  # saves asked of libtorrent and not answered yet
    pieces_verified: bool = False  # since the last save was asked
    last_asked: float = 0.0
    paused: bool = False  # libtorrent's disk writes for it are done and its files closed


class ResumeSaver:
    """Saves the resume data of the torrents it keeps (`keep` to `stop`) into their files."""

    def __init__(self, session: lt.session) -> None:
        self._session = session
        self._lock = threading.Condition()
        self._kept: dict[lt.torrent_handle, _Kept] = {}
        threading.Thread(target=self._take_alerts, name="torrent-resume", daemon=True).start()

    def keep(self, handle: lt.torrent_handle, path: Path) -> None:
        with self._lock:
            self._kept[handle] = _Kept(path, last_asked=time.monotonic())

    def stop(self, handle: lt.torrent_handle) -> None:
        """Pause `handle` until its disk writes are done, save once more and stop keeping it: no
        write to its data or its resume file follows, so the task's temporary data may go once
        this returns."""
        with self._lock:
            kept = self._kept[handle]
            try:
                handle.pause()
                self._lock.wait_for(lambda: kept.paused, STOP_WAIT)
                self._ask(handle, kept)
                self._lock.wait_for(lambda: kept.asked == 0, STOP_WAIT)
            finally:
                del self._kept[handle]  # the handle is removed next: never asked again

    def _ask(self, handle: lt.torrent_handle, kept: _Kept) -> None:
        handle.save_resume_data(lt.torrent_handle.flush_disk_cache | lt.torrent_handle.only_if_modified)
        kept.asked += 1
        kept.pieces_verified = False
        kept.last_asked = time.monotonic()

    def _take_alerts(self) -> None:
        while True:
            self._session.wait_for_alert(int(SAVE_GAP * 1000))
            alerts = self._session.pop_alerts()
            with self._lock:
                for alert in alerts:
                    self._take(alert)
                now = time.monotonic()
                for handle, kept in self._kept.items():
                    due = SAVE_GAP if kept.pieces_verified else SAVE_EVERY
                    if not kept.asked and now - kept.last_asked >= due:
                        self._ask(handle, kept)
                self._lock.notify_all()

    def _take(self, alert: lt.alert) -> None:
        kept = self._kept.get(getattr(alert, "handle", None))
        if kept is None:
            return
        if isinstance(alert, lt.piece_finished_alert):
            kept.pieces_verified = True
        elif isinstance(alert, lt.torrent_paused_alert):
            kept.paused = True
        elif isinstance(alert, lt.save_resume_data_failed_alert):
            kept.asked -= 1  # with only_if_modified: nothing changed since the last save
        elif isinstance(alert, lt.save_resume_data_alert):
            kept.asked -= 1
            try:
                write_atomically(kept.path, sealed(lt.write_resume_data_buf(alert.params)))
            except OSError as error:
                # The next start checks the pieces on disk instead: slower, never wrong.
                _log.warning("could not save resume data to %s: %s", kept.path.name, error)
