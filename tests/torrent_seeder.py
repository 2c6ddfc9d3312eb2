"""A real libtorrent session on loopback that seeds generated content, for BitTorrent tests.

DHT, local peer discovery, UPnP and NAT-PMP are off: the server finds this seeder through a
magnet's `x.pe=` parameter or through the tiny HTTP tracker on loopback that every torrent
made here names (a `.torrent` file carries no peer). Nothing leaves loopback.
"""

from __future__ import annotations

import itertools
import socket
import struct
import threading
import time
import warnings
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass
from pathlib import Path

import libtorrent as lt

PIECE = 64 * 1024


@dataclass
class Shared:
    metainfo: bytes
    info_hash: str
    handle: lt.torrent_handle
    address: str
    lacking: dict[int, bytes]  # the pieces the seeder does not send yet, by index

    @property
    def magnet(self) -> str:
        return f"magnet:?xt=urn:btih:{self.info_hash}&x.pe={self.address}"

    def uploaded(self) -> int:
        """Payload bytes this seeder has sent for the torrent so far (counted as they go:
        `all_time_upload` lags by up to a second)."""
        return self.handle.status().total_payload_upload

    def complete(self) -> None:
        """The seeder gets the pieces it lacked and sends the torrent without a rate limit."""
        for index, piece in self.lacking.items():
            self.handle.add_piece(index, piece, 0)
        _wait_until(lambda: self.handle.status().is_seeding, "the seeder to hold every piece")
        self.lacking = {}
        self.handle.set_upload_limit(0)


def make_torrent(folder: Path, name: str, trackers: tuple[str, ...] = ()) -> bytes:
    """Metainfo for the file or folder `folder/name`, with its piece hashes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        layout = lt.file_storage()
        lt.add_files(layout, str(folder / name))
        creator = lt.create_torrent(layout, PIECE, flags=lt.create_torrent.v1_only)  # aria2 (bench) speaks v1 only
        for tracker in trackers:
            creator.add_tracker(tracker)
        lt.set_piece_hashes(creator, str(folder))
        return lt.bencode(creator.generate())


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _holds(handle: lt.torrent_handle, states: tuple, pieces: int) -> bool:
    status = handle.status()
    return status.state in states and status.num_pieces == pieces


def _pieces(info: lt.torrent_info, folder: Path) -> list[bytes]:
    """The torrent's pieces, read from its files under `folder`."""
    layout = info.layout()
    payload = b"".join(bytes(layout.file_size(i)) if layout.file_flags(i) & lt.file_storage.flag_pad_file
                       else (folder / layout.file_path(i)).read_bytes() for i in range(layout.num_files()))
    return [payload[start:start + PIECE] for start in range(0, len(payload), PIECE)]


def tracker(peers: list[str]) -> ThreadingHTTPServer:
    """An HTTP tracker on loopback whose every announce answers with `peers` ("host:port")."""
    compact = b"".join(socket.inet_aton(p.split(":")[0]) + struct.pack(">H", int(p.split(":")[1])) for p in peers)
    answer = b"d8:intervali30e5:peers%d:%se" % (len(compact), compact)

    class Announce(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Announce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def announce_url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/announce"


class Seeder:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        # A fixed port: with port 0, libtorrent may bind TCP and uTP to different ports, and
        # listen_port() names only one of them.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.session = lt.session({
            "listen_interfaces": f"127.0.0.1:{port}", "enable_dht": False, "enable_lsd": False,
            "enable_upnp": False, "enable_natpmp": False,
            "allow_multiple_connections_per_ip": True, "alert_mask": 0,
            "enable_outgoing_utp": False, "enable_incoming_utp": False,  # as the server: TCP only
            "stop_tracker_timeout": 0,  # stop() has shut the tracker: no 5 s wait for a last announce
        })
        self.tracker = tracker([f"127.0.0.1:{port}"])
        self._shares = itertools.count()

    def share(self, name: str, files: dict[str, bytes] | bytes, trackers: tuple[str, ...] | None = None, *,
              upload_rate: int = 0, lacking_every: int = 0) -> Shared:
        """Seed `files` (path below a folder `name` -> bytes), or one file `name` of these bytes;
        the torrent names `trackers`, by default this seeder's own. `upload_rate` caps what it
        sends of this torrent (bytes a second). With `lacking_every` n, the seeder holds all but
        every n-th piece until `Shared.complete()`: a download from it stops short of the end
        however late a test looks, as a server killed midway must."""
        source = self.folder / str(next(self._shares))  # each share its own folder: names may repeat
        source.mkdir()
        if isinstance(files, bytes):
            (source / name).write_bytes(files)
        else:
            for path, data in files.items():
                target = source / name / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        metainfo = make_torrent(source, name, (announce_url(self.tracker),) if trackers is None else trackers)
        info = lt.torrent_info(metainfo)
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(source)
        # Not queued behind the seeder's other torrents (libtorrent starts five at a time).
        params.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        held: dict[int, bytes] = {}
        lacking: dict[int, bytes] = {}
        if lacking_every:
            params.save_path = str(source.with_name(source.name + "-partial"))  # empty: the pieces are added
            for index, piece in enumerate(_pieces(info, source)):
                (lacking if index % lacking_every == lacking_every - 1 else held)[index] = piece
        handle = self.session.add_torrent(params)
        handle.set_upload_limit(upload_rate)
        # Peers are turned away while it checks its files, and added pieces ignored.
        ready = (lt.torrent_status.downloading, lt.torrent_status.seeding)
        _wait_until(lambda: handle.status().state in ready, "the seeder to check its files")
        for index, piece in held.items():
            handle.add_piece(index, piece, 0)
        _wait_until(lambda: _holds(handle, ready, info.num_pieces() - len(lacking)), "the seeder's pieces")
        return Shared(metainfo, str(info.info_hashes().v1), handle, f"127.0.0.1:{self.session.listen_port()}", lacking)

    def stop(self) -> None:
        self.tracker.shutdown()
        for handle in self.session.get_torrents():
            self.session.remove_torrent(handle)
        del self.session
