"""The HTTP source: URLs and content IDs. The ID is resolved (engine/resolvers.py) to one or
more URLs; each is fetched with engine/segments.py (one stream, or several ranged ones) and
engine/fetcher.py into the task's `.part` file, its progress saved as resumable state
(engine/fetcher.Download) so that the next try or a restart continues where it stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.allowances import Allowances
from engine.bandwidth import Bandwidth
from engine.catalog import Catalog
from engine.delivery import Delivery, final_name
from engine.download import Download, dump_segments, load_segments
from engine.errors import FetchError, PermanentError, failure
from engine.fetcher import PROGRESS_EVERY, Fetcher
from engine.instant import checksum_mismatch, is_content_hash
from engine.origin_login import Login, read_login
from engine.outcomes import Outcome as TransferOutcome
from engine.progress import ProgressSaver
from engine.resolvers import resolve
from engine.scheduler import Running
from engine.segments import transfer
from engine.transfer_context import TransferContext
from engine.space_access import SpaceAccess
from engine.kinds import TaskState
from engine.tasks import RUNNING, Task, TaskStore
from engine.temp_area import TempArea

if TYPE_CHECKING:
    from engine.engine_settings import EngineSettings


class HttpSource:
    kinds = ("url", "id")

    def __init__(self, tasks: TaskStore, spaces: SpaceAccess, settings: EngineSettings, *, fetcher: Fetcher,
                 bandwidth: Bandwidth, catalog: Catalog, allowances: Allowances, temp: TempArea,
                 delivery: Delivery) -> None:
        self.tasks = tasks
        self._spaces = spaces
        self.settings = settings
        self._fetcher = fetcher
        self._bandwidth = bandwidth
        self.catalog = catalog
        self._allowances = allowances
        self._temp = temp
        self._delivery = delivery

    def run(self, task: Task, running: Running) -> None:
        if self._delivery.deliver_instantly(task, self._login(task)):
            return
        self.deliver(task, running, self.fetch(task, running))

    def _login(self, task: Task) -> Login:
        return read_login(self._spaces.root(task.user), task.origin_headers)

    def fetch(self, task: Task, running: Running) -> Download:
        """The task's bytes in its `.part` file, from the first candidate URL that has them
        (checked against the expected checksum, if any); the Download is its resumable state."""
        login = self._login(task)
        candidates = resolve(task, self.catalog, self.settings.mirrors)
        last_error: FetchError | None = None
        for url, expected, filename in candidates:
            if url.lower().startswith("magnet:"):  # a catalog entry; triggers and the API make torrent tasks
                raise failure(TransferOutcome.UNSUPPORTED,
                              detail="a catalog ID cannot name a magnet link yet; drop the magnet link itself into downloads/")
            download = Download(
                url=url,
                temp_path=self._temp.part_path(task),
                bytes_done=task.bytes_done,
                bytes_total=task.bytes_total,
                etag=task.etag,
                last_modified=task.last_modified,
                final_url=task.final_url,
                segments=load_segments(task.segments),
                login=login.at(url),
            )
            running.download = download
            save_progress = ProgressSaver(lambda d: self._save_progress(task, d), PROGRESS_EVERY)
            try:
                context = TransferContext(on_progress=save_progress, is_cancelled=running.cancel.is_set,
                                          room=self._allowances.allowance(task).claim,
                                          throttle=self._bandwidth.throttle(task.user),
                                          interrupting=running.cancel.interrupting)
                transfer(self._fetcher, download, context, connections=self.settings.connections_per_task)
            except PermanentError as error:
                if not is_content_hash(task):
                    raise
                last_error = error
                continue
            finally:
                save_progress.flush()  # the next try, or a restart, resumes from the last figure
            if expected:
                self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), holder=task.node, state=TaskState.VERIFYING)
                digest = download.sha256()
                if digest != expected.lower():
                    self._temp.discard_temp(task)
                    raise checksum_mismatch(expected.lower(), digest)
            task.filename_hint = filename
            task.fetched_url = url
            return download
        raise PermanentError(f"no mirror had content {task.source}: {last_error}")

    def deliver(self, task: Task, running: Running, download: Download) -> None:
        self._delivery.finish(task, running, download)

    def _save_progress(self, task: Task, download: Download) -> None:
        # Only while this node holds the task: one that stalled past its lease must not
        # overwrite the figures of the node that took over.
        self.tasks.set_state_if(
            task.id, RUNNING, holder=task.node,
            bytes_done=download.bytes_done,
            bytes_total=download.bytes_total,
            etag=download.etag,
            last_modified=download.last_modified,
            final_url=download.final_url,
            display_name=final_name(task, download),
            segments=dump_segments(download.segments),
        )
