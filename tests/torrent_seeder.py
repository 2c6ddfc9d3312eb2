"""A real libtorrent session on loopback that seeds generated content, for BitTorrent tests.

DHT, local peer discovery, UPnP and NAT-PMP are off: the server finds this seeder through a
magnet's `x.pe=` parameter or through the tiny HTTP tracker on loopback that every torrent
made here names (a `.torrent` file carries no peer). Nothing leaves loopback.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import warnings
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

    @property
    def magnet(self) -> str:
        return f"magnet:?xt=urn:btih:{self.info_hash}&x.pe={self.address}"

    def uploaded(self) -> int:
        """Payload bytes this seeder has sent for the torrent so far."""
        return self.handle.status().all_time_upload


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
    def __init__(self, folder: Path, upload_rate: int = 0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        # A fixed port: with port 0, libtorrent may bind TCP and uTP to different ports, and
        # listen_port() names only one of them.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.session = lt.session({
            "listen_interfaces": f"127.0.0.1:{port}", "enable_dht": False, "enable_lsd": False,
            "enable_upnp": False, "enable_natpmp": False, "upload_rate_limit": upload_rate,
            "allow_multiple_connections_per_ip": True, "alert_mask": 0,
            "enable_outgoing_utp": False, "enable_incoming_utp": False,  # as the server: TCP only
            "stop_tracker_timeout": 0,  # stop() has shut the tracker: no 5 s wait for a last announce
        })
        # libtorrent exempts peers on the local network from rate limits; loopback is one.
        local = self.session.get_peer_class(lt.session.local_peer_class_id)
        self.session.set_peer_class(lt.session.local_peer_class_id, {**local, "upload_limit": upload_rate})
        self.tracker = tracker([f"127.0.0.1:{port}"])

    def share(self, name: str, files: dict[str, bytes] | bytes, trackers: tuple[str, ...] | None = None) -> Shared:
        """Seed `files` (path below a folder `name` -> bytes), or one file `name` of these bytes;
        the torrent names `trackers`, by default this seeder's own."""
        if isinstance(files, bytes):
            (self.folder / name).write_bytes(files)
        else:
            for path, data in files.items():
                target = self.folder / name / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        metainfo = make_torrent(self.folder, name, (announce_url(self.tracker),) if trackers is None else trackers)
        info = lt.torrent_info(metainfo)
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(self.folder)
        handle = self.session.add_torrent(params)
        deadline = time.monotonic() + 30
        while not handle.status().is_seeding:  # peers are turned away while it checks its files
            assert time.monotonic() < deadline, "the seeder did not finish checking its files"
            time.sleep(0.05)
        return Shared(metainfo, str(info.info_hashes().v1), handle, f"127.0.0.1:{self.session.listen_port()}")

    def stop(self) -> None:
        self.tracker.shutdown()
        for handle in self.session.get_torrents():
            self.session.remove_torrent(handle)
        del self.session
