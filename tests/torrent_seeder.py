"""A real libtorrent session on loopback that seeds generated content, for BitTorrent tests.

DHT, local peer discovery, UPnP and NAT-PMP are off: the only way to this seeder is its
address, given to the server in a magnet's `x.pe=` parameter. Nothing leaves loopback.
"""

from __future__ import annotations

import warnings
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

    def offer_to(self, port: int) -> None:
        """Connect to a peer listening on loopback `port` (how a .torrent, which names no
        peers, finds this seeder in tests)."""
        self.handle.connect_peer(("127.0.0.1", port))

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


class Seeder:
    def __init__(self, folder: Path, upload_rate: int = 0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.session = lt.session({
            "listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
            "enable_upnp": False, "enable_natpmp": False, "upload_rate_limit": upload_rate,
            "allow_multiple_connections_per_ip": True, "alert_mask": 0,
        })
        # libtorrent exempts peers on the local network from rate limits; loopback is one.
        local = self.session.get_peer_class(lt.session.local_peer_class_id)
        self.session.set_peer_class(lt.session.local_peer_class_id, {**local, "upload_limit": upload_rate})

    def share(self, name: str, files: dict[str, bytes] | bytes, trackers: tuple[str, ...] = ()) -> Shared:
        """Seed `files` (path below a folder `name` -> bytes), or one file `name` of these bytes."""
        if isinstance(files, bytes):
            (self.folder / name).write_bytes(files)
        else:
            for path, data in files.items():
                target = self.folder / name / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        metainfo = make_torrent(self.folder, name, trackers)
        info = lt.torrent_info(metainfo)
        params = lt.add_torrent_params()
        params.ti = info
        params.save_path = str(self.folder)
        params.flags |= lt.torrent_flags.seed_mode
        handle = self.session.add_torrent(params)
        return Shared(metainfo, str(info.info_hashes().v1), handle, f"127.0.0.1:{self.session.listen_port()}")

    def stop(self) -> None:
        for handle in self.session.get_torrents():
            self.session.remove_torrent(handle)
        del self.session
