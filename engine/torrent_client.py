"""The server's one libtorrent session: its settings, its peer address rules, and one torrent's
transfer into the temporary area (SPEC 4b).

Peers are connections the server makes on a user's behalf, so they obey the address rules of
every fetch: libtorrent's IP filter refuses loopback, private, link-local, multicast and
reserved peers (and trackers) unless `engine.allow_private_networks` is set or
`engine.private_allowlist` names them. Local peer discovery, UPnP and NAT-PMP stay off.

Resume: once the metadata is known it is saved beside the data (`<task>.torrent`), and
libtorrent's resume data, which names the verified pieces, is saved as the download goes
(`<task>.resume`, engine/torrent_resume.py); a restart (or `kill -9`) adds the torrent again
from the two and fetches only the pieces that were not verified, without hashing the others
again. A TorrentState names the three (the data's folder, the metadata and the resume data):
all a later try needs to resume.
"""

from __future__ import annotations

import ipaddress
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import libtorrent as lt

from engine.addresses import Network
from engine.download import Download
from engine.errors import Cancelled, PermanentError, failure
from engine.outcomes import Outcome
from engine.torrent_metainfo import LIMITS, Metainfo, MetainfoError, describe, parse_magnet
from engine.torrent_resume import ResumeSaver, resumed_params, write_atomically
from engine.transfer_context import TransferContext

POLL_EVERY = 0.5
REAP_EVERY = 1.0
CALL_PEERS_EVERY = 2.0

# What a public address is not (engine/addresses.classify, as ranges for libtorrent's filter).
_BLOCKED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
)]


@dataclass(frozen=True)
class TorrentSettings:
    """The `engine.torrent.*` keys (defaults: server/settings.py)."""

    port: int
    dht: bool
    seed_ratio: float
    seed_time: float
    metadata_timeout: float
    stall_timeout: float


@dataclass(frozen=True)
class TorrentState:
    """What libtorrent resumes a torrent from, as data: the pieces saved under `save_dir`, the
    metadata at `metainfo_path`, saved there once the swarm sent it (or a `.torrent` trigger
    brought it), and the resume data at `resume_path`, which names the verified pieces; `meta`
    describes the torrent once it is known."""

    save_dir: Path
    metainfo_path: Path
    resume_path: Path
    meta: Metainfo | None = None


@dataclass
class TorrentProgress:
    """What the API shows of a running torrent."""

    peers: int = 0
    seeds: int = 0
    download_rate: int = 0


@dataclass
class _Seeding:
    handle: lt.torrent_handle
    tree: Path
    started: float
    size: int


def ip_filter(allow_private: bool, allowlist: tuple[Network, ...]) -> lt.ip_filter:
    rules = lt.ip_filter()
    if allow_private:
        return rules
    for network in _BLOCKED:
        rules.add_rule(str(network[0]), str(network[-1]), 1)
    for network in allowlist:
        rules.add_rule(str(network[0]), str(network[-1]), 0)
    return rules


class TorrentClient:
    """One libtorrent session for all of the server's torrents."""

    def __init__(self, settings: TorrentSettings, *, allow_private: bool, allowlist: tuple[Network, ...]) -> None:
        self.settings = settings
        self._session = lt.session({
            "listen_interfaces": f"0.0.0.0:{settings.port},[::]:{settings.port}",
            "enable_dht": settings.dht,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "apply_ip_filter_to_trackers": True,
            # uTP's delay-based congestion control yields to any other traffic and ran at a
            # quarter of TCP's rate here; TCP is what other clients (aria2) use.
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            # Writes waiting for the disk are held in memory; libtorrent's default is 100 MiB.
            "max_queued_disk_bytes": 16 * 1024 * 1024,
            # Verified pieces say when to save resume data; a paused torrent (a status alert),
            # that its disk writes are done.
            "alert_mask": lt.alert.category_t.piece_progress_notification | lt.alert.category_t.status_notification,
            "user_agent": "fetchdrive/0.1",
        })
        self._session.set_ip_filter(ip_filter(allow_private, allowlist))
        self._resume = ResumeSaver(self._session)
        self._lock = threading.Lock()
        self._seeding: list[_Seeding] = []
        self._reaper: threading.Thread | None = None

    @property
    def seeds(self) -> bool:
        return self.settings.seed_ratio > 0 or self.settings.seed_time > 0

    def seed(self, metainfo: bytes, tree: Path) -> None:
        """Seed a completed torrent from `tree` (links to the stored files) until
        `seed_ratio` or `seed_time` is reached; then the tree goes."""
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(metainfo, LIMITS)
        params.save_path = str(tree)
        # Not seed_mode: a torrent in seed mode hangs up on TCP peers that ask for its metadata.
        params.flags |= lt.torrent_flags.upload_mode
        params.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        with self._lock:
            self._seeding.append(_Seeding(self._session.add_torrent(params), tree, time.monotonic(), params.ti.total_size()))
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="torrent-seeding", daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        while True:
            time.sleep(REAP_EVERY)
            with self._lock:
                for seeding in [s for s in self._seeding if self._seeded_enough(s)]:
                    self._seeding.remove(seeding)
                    self._session.remove_torrent(seeding.handle)
                    shutil.rmtree(seeding.tree, ignore_errors=True)

    def _seeded_enough(self, seeding: _Seeding) -> bool:
        ratio, seconds = self.settings.seed_ratio, self.settings.seed_time
        uploaded = seeding.handle.status().all_time_upload
        return bool((ratio and uploaded >= ratio * seeding.size) or (seconds and time.monotonic() - seeding.started >= seconds))

    def fetch(self, source: str, state: TorrentState, download: Download, context: TransferContext, *,
              progress: TorrentProgress, on_metadata: Callable[[Metainfo], None]) -> TorrentState:
        """Download the torrent `source` (a magnet URI) into `state.save_dir`, resuming from what
        `state` names; returns it with the torrent's description once every piece is verified.
        The verified bytes are counted in `download` and reported to `context`, which also says
        when to stop and holds the room in the quota; `on_metadata(meta)` is told the torrent
        once it is known. The metadata comes from `state.metainfo_path` if a `.torrent` file or
        an earlier try saved it there, else from the swarm."""
        magnet = parse_magnet(source)
        if state.metainfo_path.exists():
            magnet.ti = lt.torrent_info(str(state.metainfo_path))
        params = resumed_params(magnet, state.resume_path, state.save_dir)
        params.save_path = str(state.save_dir)
        params.flags &= ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
        state.save_dir.mkdir(parents=True, exist_ok=True)
        handle = self._session.add_torrent(params)
        self._resume.keep(handle, state.resume_path)
        try:
            meta = self._follow(handle, magnet.peers, state.metainfo_path, download, context, progress, on_metadata)
        finally:
            self._resume.stop(handle)
            self._session.remove_torrent(handle)
        return replace(state, meta=meta)

    def _follow(self, handle: lt.torrent_handle, known_peers: list, metainfo_path: Path, download: Download,
                context: TransferContext, progress: TorrentProgress,
                on_metadata: Callable[[Metainfo], None]) -> Metainfo:
        started = last_peer = time.monotonic()
        last_call = 0.0
        meta: Metainfo | None = None
        while True:
            if context.is_cancelled():
                raise Cancelled()
            status = handle.status()
            now = time.monotonic()
            if status.errc.value():
                raise failure(Outcome.PEER_ERROR, detail=status.errc.message())
            if meta is None and status.has_metadata:
                meta = self._checked_metadata(handle, metainfo_path, context)
                on_metadata(meta)
            if meta is None and now - started > self.settings.metadata_timeout:
                raise PermanentError(
                    f"no peer sent the torrent's metadata within {self.settings.metadata_timeout:.0f} s; "
                    "check the magnet link, or add a .torrent file instead"
                )
            if status.num_peers:
                last_peer = now
            elif now - last_call >= CALL_PEERS_EVERY:
                # A magnet's x.pe= peers: libtorrent backs off a peer that failed once for long.
                last_call = now
                for peer in known_peers:
                    handle.connect_peer(peer)
            elif now - last_peer > self.settings.stall_timeout:
                raise PermanentError(f"no peer was reachable for {self.settings.stall_timeout:.0f} s")
            progress.peers, progress.seeds, progress.download_rate = status.num_peers, status.num_seeds, status.download_payload_rate
            if meta is not None:
                download.bytes_done, download.bytes_total = status.total_wanted_done, meta.total_size
                context.on_progress(download)
                if status.total_wanted_done >= status.total_wanted and status.state in (
                        lt.torrent_status.finished, lt.torrent_status.seeding):
                    return meta
            time.sleep(POLL_EVERY)

    def _checked_metadata(self, handle: lt.torrent_handle, metainfo_path: Path, context: TransferContext) -> Metainfo:
        info = handle.torrent_file()
        try:
            meta = describe(info)
        except MetainfoError as error:
            raise PermanentError(str(error)) from None
        context.require_room(meta.total_size)
        if not metainfo_path.exists():
            write_atomically(metainfo_path, b"d4:info" + info.info_section() + b"e")
        return meta
