"""The downloads engine's facade: the one object the drive and the API talk to.

`DownloadEngine` builds the engine's parts and hands each call to the part that does the job.
The trip of a trigger, from PUT to finished file:

1. `trigger_files.py`: the drive reports a complete trigger (`trigger_ready`); it is parsed
   (`triggers.py`) and its tasks are made (`add`/`_add_task` here, stored by `tasks.py`).
2. `scheduler.py`: a worker claims the task within the node's and per-user limits, under a
   lease that this node (`nodes.py`) renews while it runs the task.
3. `attempts.py`: one try, run by the task's source; its outcome (retry later, fail) decided.
4. `sources/`: `http.py` (URLs and IDs, resolved by `resolvers.py`, fetched by `segments.py`
   and `fetcher.py`) or `torrent.py` (`torrent_client.py`) fetch into the temporary area
   (`temp_area.py`), holding room in the user's quota (`allowances.py`).
5. `delivery.py`: the file is published into the user's folder, the task is done, the bytes
   go to the content store (`content_store.py`); held content is delivered at once (`instant.py`).
6. `trigger_files.py` again: the finished trigger goes after a while (`trigger_linger.py`), or
   a failed one gets its `.error.txt`.

It reaches the users' spaces only through `SpaceAccess` (`space_access.py`), so it imports
nothing from the drive.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

from engine.allowances import Allowances
from engine.attempts import Attempts
from engine.bandwidth import Bandwidth
from engine.catalog import Catalog
from engine.content_store import ContentStore
from engine.database import Database
from engine.delivery import Delivery
from engine.devices import Devices
from engine.engine_settings import EngineSettings
from engine.events import EventLog, TaskEvents, notifier_for
from engine.fetcher import Fetcher
from engine.naming import choose_filename, sanitize_filename
from engine.nodes import Nodes
from engine.notifications import Notifier, Outcome, read_targets
from engine.placeholders import DownloadsStatus, Placeholder
from engine.safe_http import make_session
from engine.scheduler import Scheduler
from engine.socket_splice import splice_supported
from engine.sources.http import HttpSource
from engine.sources.torrent import TorrentSource
from engine.space_access import SpaceAccess
from engine.kinds import SourceKind, TaskState
from engine.tasks import Task, TaskStore
from engine.temp_area import TempArea
from engine.torrent_client import TorrentProgress
from engine.torrent_metainfo import parse_magnet
from engine.torrent_shelf import TorrentShelf
from engine.trigger_files import TriggerFiles
from engine.triggers import source_kind

__all__ = ["DownloadEngine", "EngineSettings", "Placeholder", "RetryRefused", "SpaceAccess"]

_log = logging.getLogger(__name__)


class RetryRefused(ValueError):
    """A retry that would only copy a file again or run a download twice; str(e) says why."""


class DownloadEngine:
    def __init__(self, database: Database, data_root: Path, spaces: SpaceAccess, settings: EngineSettings, *,
                 event_history: int, nodes: Nodes) -> None:
        """`event_history`: how many events a user's stream keeps for resuming (events.history);
        `nodes`: this node among those sharing the database, which the caller starts before
        `start` and stops after `stop`."""
        self.tasks = TaskStore(database)
        self._nodes = nodes
        self.events = EventLog(database, history=event_history, notifier=notifier_for(database))
        self.devices = Devices(database, self.events)
        self.tasks.on_change = TaskEvents(self.events, self.devices.send_finished).changed
        self.catalog = Catalog(database)
        self.store = ContentStore(data_root / "store")
        self._spaces = spaces
        self.settings = settings
        self._allowances = Allowances(spaces, self.tasks)
        self._temp = TempArea(data_root / "tmp" / "downloads", self.tasks, self._allowances, spaces)
        self.temp_root = self._temp.root
        fetcher = Fetcher(
            make_session(allow_private=settings.allow_private_networks, allowlist=settings.private_allowlist),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            splice=splice_supported(self.temp_root),
        )
        self.notifier = Notifier(allow_private=settings.allow_private_networks, allowlist=settings.private_allowlist)
        self.shelf = TorrentShelf(data_root / "torrents")
        bandwidth = Bandwidth(settings.rate_limit, settings.per_user_rate_limit)
        self._scheduler = Scheduler(self.tasks, node=self._nodes.name, lease=settings.lease, workers=settings.workers,
                                    per_user=settings.per_user, discard_temp=self._temp.discard_temp,
                                    on_renewal=lambda: bandwidth.share(len(self._nodes.alive())))
        self._triggers = TriggerFiles(self.tasks, self.events, self.devices, spaces, self.temp_root,
                                      linger=settings.trigger_linger, add_task=self._add_task,
                                      cancel=self._scheduler.cancel)
        self._delivery = Delivery(self.tasks, self.store, spaces, self._allowances, self._temp, self.notifier,
                                  fetcher=fetcher, catalog=self.catalog, mirrors=settings.mirrors,
                                  cache_ttl=settings.cache_ttl, trigger_finished=self._triggers.trigger_finished)
        sources = [
            HttpSource(self.tasks, spaces, settings, fetcher=fetcher,
                       bandwidth=bandwidth, catalog=self.catalog,
                       allowances=self._allowances, temp=self._temp, delivery=self._delivery),
            TorrentSource(self.tasks, spaces, settings, store=self.store, shelf=self.shelf,
                          allowances=self._allowances, temp=self._temp, delivery=self._delivery),
        ]
        self._attempts = Attempts(self.tasks, spaces, sources, settings, notifier=self.notifier,
                                  allowances=self._allowances, temp=self._temp, stopping=self._scheduler.stopping,
                                  report_trigger_errors=self._triggers.report_trigger_errors)
        self._status = DownloadsStatus(self.tasks, self._scheduler.live_progress)

    # --- life cycle -------------------------------------------------------

    def start(self, users: list[str]) -> None:
        resumed = self.tasks.release(self._nodes.name)
        if resumed:
            _log.info("resuming %d interrupted download(s)", resumed)
        others_alive = set(self._nodes.alive()) - {self._nodes.name}
        self._temp.remove_orphan_temp_files(self._delivery.file_away, others_alive=others_alive)
        self._triggers.start()
        for user in users:
            self._allowances.hold_room_of_saved_bytes(user, others_alive)
            self._triggers.pick_up_waiting_triggers(user)
        self._scheduler.start(self._attempts.run)

    def stop(self) -> None:
        """Interrupt running downloads; they stay resumable, and go back to the queue for
        another node, or this one at its next start, to continue."""
        self._scheduler.stop()
        self.tasks.release(self._nodes.name)
        self.notifier.stop()
        self._triggers.stop()

    def wake(self) -> None:
        self._scheduler.wake()

    def notification_targets(self, user: str) -> list[str]:
        """The user's notification targets, masked."""
        return [target.masked for target in read_targets(self._spaces.root(user))]

    def test_notifications(self, user: str) -> list[Outcome]:
        return self.notifier.send_test(self._spaces.root(user))

    # --- the downloads folder (called by the drive) ------------------------

    def trigger_ready(self, user: str, rel_path: str) -> None:
        """A complete trigger file is at `rel_path`: create, keep or cancel its tasks."""
        self._triggers.trigger_ready(user, rel_path)

    def path_removed(self, user: str, rel_path: str) -> None:
        """A trigger (or a folder holding triggers) was deleted or moved away: cancel."""
        self._triggers.path_removed(user, rel_path)

    def placeholders(self, user: str, folder: str) -> list[Placeholder]:
        return self._status.placeholders(user, folder)

    def status_text(self, user: str) -> str:
        """Unfinished and failed downloads as plain text, one line each; empty when none."""
        return self._status.status_text(user)

    # --- tasks (called by the API) ----------------------------------------

    def add(self, user: str, *, source: str, kind: str, folder: str = "downloads", filename: str | None = None,
            sha256: str | None = None, send_to: str | None = None, secrets: str | None = None) -> Task:
        """`source` and `secrets` as a parsed trigger gives them (Trigger.sources, .secrets)."""
        stem = sanitize_filename(PurePosixPath(source).name or "download")
        return self._add_task(user, source=source, kind=source_kind(source, kind == SourceKind.ID), folder=folder,
                              trigger_path=None, sha256_expected=sha256, filename_hint=filename, stem=stem,
                              send_to=send_to, secrets=secrets)

    def _add_task(self, user: str, *, source: str, kind: str, folder: str, trigger_path: str | None,
                  sha256_expected: str | None, filename_hint: str | None, stem: str,
                  metainfo: bytes | None = None, send_to: str | None = None, secrets: str | None = None) -> Task:
        """`secrets`: the login the trigger gives the origin (Trigger.secrets), kept apart
        from the source, which never holds one."""
        if kind == SourceKind.ID:
            display = sanitize_filename(filename_hint or stem)
        elif kind == SourceKind.TORRENT:
            display = sanitize_filename(filename_hint or parse_magnet(source).name or stem)
        else:
            display = choose_filename(trigger_filename=filename_hint, content_disposition=None, final_url=source, trigger_stem=stem)
        task = self.tasks.add(
            user=user, source=source, kind=kind, folder=folder, trigger_path=trigger_path,
            display_name=display, sha256_expected=sha256_expected, filename_hint=filename_hint, send_to=send_to,
            origin_headers=secrets,
        )
        self.tasks.update(task.id, temp_path=str(self.temp_root / f"{task.id}.part"))
        if metainfo is not None:
            self._temp.torrent_paths(task)[1].write_bytes(metainfo)
        self.wake()
        return self.tasks.get(task.id)

    def cancel(self, task_id: int) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and self._scheduler.cancel(task)

    def retry(self, task_id: int) -> Task | None:
        """Run a failed or cancelled task again (its trigger's error file goes away). Raises
        RetryRefused when another task of the same trigger and source has finished or runs."""
        task = self.tasks.get(task_id)
        if task is None or task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            return None
        if task.superseded_by is not None:
            later = self.tasks.get(task.superseded_by)
            where = f" ({later.path})" if later and later.path else ""
            raise RetryRefused(
                f"task {task.id} needs no retry: task {task.superseded_by} has downloaded the same source since"
                f"{where}; to download it once more, add it again"
            )
        running = self.tasks.other_unfinished(task.id)
        if running is not None:
            raise RetryRefused(f"task {task.id} needs no retry: task {running.id} is {running.state} for the same source")
        self._scheduler.wait_until_left(task.id)
        self.tasks.update(task.id, state=TaskState.QUEUED, error=None, attempts=0, first_failure_at=None,
                          next_attempt_at=None, finished_at=None, bytes_done=0, segments=None)
        if task.trigger_path:
            self._triggers.remove_error_file(task.user, task.trigger_path)
        self.wake()
        return self.tasks.get(task.id)

    def live_torrent(self, task_id: int) -> TorrentProgress | None:
        """Peers, seeds and rate of a running torrent."""
        return self._scheduler.live_torrent(task_id)

    def live_progress(self, task_id: int) -> tuple[int, float] | None:
        """(bytes done, seconds running) of a running task, for speed and ETA."""
        return self._scheduler.live_progress(task_id)
