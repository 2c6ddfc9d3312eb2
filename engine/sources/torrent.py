"""The BitTorrent source: magnet links and .torrent triggers, fetched by a libtorrent session
(engine/torrent_client.py) started with the first torrent, into `<id>.bt` in the temporary
area. `fetch` returns the torrent's resumable state as data (a TorrentState: the save path, the
metadata and the resume data libtorrent resumes from, and the torrent's description); `deliver`
publishes it. A delivered torrent's files are filed in the content store and its manifest shelved
(engine/torrent_shelf.py), so the same info-hash later comes from the store, without the swarm."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from engine.allowances import Allowances
from engine.content_store import ContentStore
from engine.delivery import Delivery
from engine.errors import Cancelled
from engine.download import Download
from engine.following_hasher import file_sha256
from engine.progress import ProgressSaver
from engine.scheduler import Running
from engine.space_access import SpaceAccess
from engine.kinds import TaskState
from engine.tasks import Task, TaskStore
from engine.temp_area import TempArea
from engine.torrent_client import TorrentClient, TorrentProgress, TorrentState
from engine.torrent_metainfo import Metainfo, magnet_info_hash
from engine.transfer_context import TransferContext
from engine.torrent_shelf import ShelvedFile, ShelvedTorrent, TorrentShelf, stage_tree

if TYPE_CHECKING:
    from engine.engine_settings import EngineSettings


SAVE_EVERY = 1.0  # seconds between saves of a torrent's progress to its task row


class TorrentSource:
    kinds = ("torrent",)

    def __init__(self, tasks: TaskStore, spaces: SpaceAccess, settings: EngineSettings, *, store: ContentStore,
                 shelf: TorrentShelf, allowances: Allowances, temp: TempArea, delivery: Delivery) -> None:
        self.tasks = tasks
        self._spaces = spaces
        self.settings = settings
        self.store = store
        self.shelf = shelf
        self._allowances = allowances
        self._temp = temp
        self._delivery = delivery
        self._torrent_client: TorrentClient | None = None
        self._client_lock = threading.Lock()

    def _torrents(self) -> TorrentClient:
        """The libtorrent session, started with the first torrent (most servers never need it)."""
        with self._client_lock:
            if self._torrent_client is None:
                self._torrent_client = TorrentClient(
                    self.settings.torrent, allow_private=self.settings.allow_private_networks,
                    allowlist=self.settings.private_allowlist,
                )
            return self._torrent_client

    def run(self, task: Task, running: Running) -> None:
        if self._deliver_torrent_from_store(task):
            return
        self.deliver(task, running, self.fetch(task, running))

    def fetch(self, task: Task, running: Running) -> TorrentState:
        """The torrent's files in its `.bt` folder, resumed from the pieces, metadata and resume
        data an earlier try (or the `.torrent` trigger) left; its TorrentState, with the description."""
        state = TorrentState(*self._temp.torrent_paths(task))
        download = Download(url=task.source, temp_path=state.save_dir, bytes_done=task.bytes_done,
                            bytes_total=task.bytes_total)
        running.download, running.torrent = download, TorrentProgress()
        save_progress = ProgressSaver(lambda d: self.tasks.update(task.id, bytes_done=d.bytes_done,
                                                                  bytes_total=d.bytes_total), SAVE_EVERY)
        context = TransferContext(on_progress=save_progress, is_cancelled=running.cancel.is_set,
                                  room=self._allowances.allowance(task).claim)

        def on_metadata(meta: Metainfo) -> None:
            task.display_name = meta.name
            self.tasks.update(task.id, display_name=meta.name, bytes_total=meta.total_size)

        try:
            state = self._torrents().fetch(task.source, state, download, context, progress=running.torrent,
                                           on_metadata=on_metadata)
        finally:
            save_progress.flush()  # the next try, or a restart, shows the last figure
        self.tasks.update(task.id, bytes_done=state.meta.total_size, bytes_total=state.meta.total_size)
        return state

    def deliver(self, task: Task, running: Running, state: TorrentState) -> None:
        """Publish a fetched torrent, file its files in the content store, shelve its manifest."""
        self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), holder=task.node, state=TaskState.VERIFYING)
        if running.cancel.is_set():
            raise Cancelled()
        meta, save_dir = state.meta, state.save_dir
        sources = [(save_dir / f.disk_path, f.path) for f in meta.files]
        if meta.multi_file:
            staging = self._temp.root / f"{task.id}.deliver"
            stage_tree(sources, staging / meta.name)
            placed = self._delivery.publish(task, staging / meta.name, meta.name, digest=None, instant=False)
            if placed is None:
                raise Cancelled()
            published = [placed.joinpath(*parts) for _source, parts in sources]
        else:
            stage_tree(sources[:1], save_dir / "whole")  # a zero-length file may not exist yet
            placed = self._delivery.publish(task, save_dir / "whole" / meta.files[0].path[-1], meta.name, digest=None,
                                            instant=False)
            if placed is None:
                raise Cancelled()
            published = [placed]
        filed = []
        for (source, parts), user_copy, file in zip(sources, published, meta.files):
            digest = file_sha256(user_copy).hexdigest()
            if source.exists():
                self.store.adopt(source, digest, user_copy, self._spaces.relink)
            filed.append(ShelvedFile(parts, digest, file.size))
        if not meta.multi_file:
            self.tasks.update(task.id, sha256=filed[0].sha256)
        self.shelf.record(meta.info_hash, ShelvedTorrent(meta.name, meta.multi_file, tuple(filed)))
        if self._torrents().seeds:
            tree = self._temp.seeding_root / f"{task.id}"
            stage_tree([(self.store.object_path(kept.sha256), (file.disk_path,)) for file, kept in zip(meta.files, filed)], tree)
            self._torrents().seed(state.metainfo_path.read_bytes(), tree)
        self._temp.remove_torrent_temp(task)

    def _deliver_torrent_from_store(self, task: Task) -> bool:
        """A torrent delivered before (same info-hash) comes from the store, without the swarm."""
        shelved = self.shelf.get(magnet_info_hash(task.source))
        if shelved is None or not all(self.store.has(f.sha256) for f in shelved.files):
            return False
        self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), holder=task.node, state=TaskState.VERIFYING)
        self._temp.discard_temp(task)
        if shelved.multi_file:
            staging = self._temp.root / f"{task.id}.deliver" / shelved.name
            stage_tree([(self.store.object_path(f.sha256), f.path) for f in shelved.files], staging)
            self._delivery.publish(task, staging, shelved.name, digest=None, instant=True)
            self._temp.remove_torrent_temp(task)
        else:
            digest = shelved.files[0].sha256
            self._delivery.publish(task, self.store.object_path(digest), shelved.name, digest=digest, instant=True)
        return True
