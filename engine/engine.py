"""The downloads engine: turns triggers into tasks, runs them on worker threads, delivers files.

`DownloadEngine` is what the drive and the API talk to. It owns the task store, the
content store and the worker pool; it reaches the users' spaces only through `SpaceAccess`,
so it imports nothing from the drive. Scheduling: at most `workers` downloads at once and
`per_user` per user, the next one going to the user with the fewest running (oldest task
first); two tasks for the same source never run together, so the second one is delivered
from the store without a second transfer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import re
import threading
import time
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import urlsplit

from engine.addresses import Network
from engine.bandwidth import Bandwidth
from engine.catalog import Catalog
from engine.content_store import ContentStore, link_under_free_name
from engine.database import Database
from engine.devices import Devices
from engine.events import EventLog, TaskEvents
from engine.errors import Cancelled, FetchError, LocalStorageError, PermanentError, TransientError, local_storage_error
from engine.fetcher import PROGRESS_EVERY, Download, Fetcher
from engine.following_hasher import file_sha256
from engine.instant import InstantSource, checksum_mismatch, expected_sha256, is_content_hash, mirror_urls
from engine.naming import ERROR_SUFFIX, PART_SUFFIX, STATUS_FILE, choose_filename, sanitize_filename
from engine.notifications import Message, Notifier, Outcome, read_targets
from engine.progress import ProgressSaver
from engine.origin_login import Login, read_login
from engine.retry import RetryPolicy
from engine.safe_http import make_session
from engine.segments import transfer
from engine.torrent_client import TorrentClient, TorrentProgress, TorrentSettings
from engine.torrent_metainfo import Metainfo, magnet_info_hash, parse_magnet
from engine.torrent_shelf import ShelvedFile, ShelvedTorrent, TorrentShelf, move_under_free_name, stage_tree, tree_size
from engine.socket_splice import splice_supported
from engine.kinds import SourceKind, TaskState
from engine.tasks import UNFINISHED, Task, TaskStore
from engine.trigger_linger import LingeringTriggers
from engine.triggers import MAX_TRIGGER_BYTES, Trigger, TriggerError, is_trigger_name, parse_trigger, source_kind, trigger_size_limit

_log = logging.getLogger(__name__)


class Allowance(Protocol):
    """Room in one user's quota held for bytes on their way in (a download in the temporary
    area), so that concurrent writers never store more than the quota."""

    held: int

    def claim(self, total: int, *, force: bool = False) -> int:
        """Hold room for `total` bytes, or as many as the quota allows; returns what is held.
        `force`: hold `total` even over the quota (bytes already on disk)."""

    def settle(self, delta: int) -> None:
        """Book `delta` bytes as stored and hold nothing more, in one step."""

    def release(self) -> None:
        """Hold nothing more."""


class SpaceAccess(Protocol):
    """What the engine needs from the drive."""

    def root(self, user: str) -> Path:
        """The user's space folder."""

    def reserve(self, user: str) -> Allowance:
        """A new, empty allowance in the user's quota."""

    def disk_room(self) -> int:
        """Bytes free on disk above the configured reserve."""

    def charge(self, user: str, delta: int) -> None:
        """Book `delta` bytes against the user's quota."""

    def locked(self, path: Path) -> AbstractContextManager[None]:
        """Hold the drive's lock on one file of a space while replacing it."""


@dataclass(frozen=True)
class EngineSettings:
    workers: int = 4
    per_user: int = 2
    allow_private_networks: bool = False
    private_allowlist: tuple[Network, ...] = ()
    retry: RetryPolicy = RetryPolicy(1, 300, 86400)
    connections_per_task: int = 4
    rate_limit: int | None = None
    per_user_rate_limit: int | None = None
    connect_timeout: float = 15
    read_timeout: float = 60
    mirrors: tuple[str, ...] = ()
    cache_ttl: float = 86400
    torrent: TorrentSettings = TorrentSettings()
    trigger_linger: float = 30


@dataclass(frozen=True)
class Placeholder:
    """A read-only entry of the downloads folder: partial data on disk, or generated text."""

    name: str
    size: int
    modified: float
    temp_path: str | None
    content: bytes | None = None


@dataclass
class _Running:
    task_id: int
    user: str
    source: str
    cancel: threading.Event
    download: Download | None = None
    started: float = 0.0
    torrent: TorrentProgress | None = None


_SHA256_IN_NAME = re.compile(r"[0-9a-fA-F]{64}")


def _human(size: float | None) -> str:
    if size is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    return f"{size:.1f} TiB"


class RetryRefused(ValueError):
    """A retry that would only copy a file again or run a download twice; str(e) says why."""


def _remove_temp(item: Path) -> None:
    if item.is_dir() and not item.is_symlink():
        shutil.rmtree(item, ignore_errors=True)
    else:
        item.unlink(missing_ok=True)


class DownloadEngine:
    def __init__(self, database: Database, data_root: Path, spaces: SpaceAccess, settings: EngineSettings) -> None:
        self.tasks = TaskStore(database)
        self.events = EventLog(database)
        self.devices = Devices(database, self.events)
        self.tasks.on_change = TaskEvents(self.events, self.devices.send_finished).changed
        self.catalog = Catalog(database)
        self.store = ContentStore(data_root / "store")
        self.temp_root = data_root / "tmp" / "downloads"
        self.temp_root.mkdir(parents=True, exist_ok=True)
        self._spaces = spaces
        self.settings = settings
        self._fetcher = Fetcher(
            make_session(allow_private=settings.allow_private_networks, allowlist=settings.private_allowlist),
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            splice=splice_supported(self.temp_root),
        )
        self._bandwidth = Bandwidth(settings.rate_limit, settings.per_user_rate_limit)
        self._cond = threading.Condition()
        self._running: dict[int, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._trigger_lock = threading.RLock()
        self._filing: dict[int, Future[str]] = {}
        self._instant = InstantSource(
            self.tasks, self.catalog, self.store, self._fetcher, mirrors=settings.mirrors,
            cache_ttl=settings.cache_ttl, holds=self._store_holds, filed_digest=self._filed_digest,
        )
        self.notifier = Notifier(allow_private=settings.allow_private_networks, allowlist=settings.private_allowlist)
        self._torrent_client: TorrentClient | None = None
        self.shelf = TorrentShelf(data_root / "torrents")
        # Per task, the quota room its bytes in the temporary area hold (kept while it waits
        # between tries; given back when the file is published or the data discarded).
        self._allowances: dict[int, Allowance] = {}
        self._allowances_lock = threading.Lock()
        self._lingering = LingeringTriggers(settings.trigger_linger, self._remove_finished_trigger)

    # --- life cycle -------------------------------------------------------

    def start(self, users: list[str]) -> None:
        resumed = self.tasks.reset_interrupted()
        if resumed:
            _log.info("resuming %d interrupted download(s)", resumed)
        self._remove_orphan_temp_files()
        self._lingering.start()
        for user in users:
            self._hold_room_of_saved_bytes(user)
            self._pick_up_waiting_triggers(user)
        for number in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"download-worker-{number + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Interrupt running downloads; they stay resumable and continue at the next start."""
        self._stopping.set()
        with self._cond:
            for running in self._running.values():
                running.cancel.set()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        self.notifier.stop()
        self._lingering.stop()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def notification_targets(self, user: str) -> list[str]:
        """The user's notification targets, masked."""
        return [target.masked for target in read_targets(self._spaces.root(user))]

    def test_notifications(self, user: str) -> list[Outcome]:
        return self.notifier.send_test(self._spaces.root(user))

    # --- triggers (called by the drive) -----------------------------------

    def trigger_ready(self, user: str, rel_path: str) -> None:
        """A complete trigger file is at `rel_path`: create, keep or cancel its tasks."""
        with self._trigger_lock:
            trigger_file = self._spaces.root(user) / rel_path
            try:
                with open(trigger_file, "rb") as handle:
                    data = handle.read(trigger_size_limit(rel_path) + 1)
            except FileNotFoundError:
                return
            name = PurePosixPath(rel_path).name
            try:
                trigger = parse_trigger(name, data)
            except TriggerError as error:
                for task in self.tasks.for_trigger(user, rel_path):
                    self._cancel(task)
                self._write_error_file(user, rel_path, f"{name} cannot be used: {error}")
                return
            self._submit(user, rel_path, trigger)

    def _submit(self, user: str, rel_path: str, trigger: Trigger) -> None:
        unfinished = [t for t in self.tasks.for_trigger(user, rel_path) if t.unfinished]
        wanted = set(trigger.sources)
        for task in unfinished:
            if task.source not in wanted:
                self._cancel(task)
        kept = {task.source: task.id for task in unfinished if task.source in wanted}
        unknown_devices = self.devices.unknown(user, trigger.send_to)
        if unknown_devices:
            self._write_error_file(user, rel_path, f"{PurePosixPath(rel_path).name} cannot be used: no device "
                                   f"{', '.join(unknown_devices)}; run `fetchdrive sync --device NAME` there first")
            return
        self._remove_error_file(user, rel_path)
        path = PurePosixPath(rel_path)
        # SPEC 4.4: the same trigger again (rclone uploads it again once it is gone) starts
        # nothing new while the file its earlier download made is still in the folder.
        delivered = {source for source, task in self._latest_in_folder(user, str(path.parent), trigger).items()
                     if task.state == TaskState.DONE and self._still_there(task)}
        if delivered >= wanted:
            self._lingering.schedule(user, rel_path)
        for source, secrets in zip(trigger.sources, trigger.secrets):
            if source in kept:  # a login fixed in the trigger counts from the next try
                self.tasks.update(kept[source], origin_headers=secrets)
            elif source not in delivered:
                self._add_task(
                    user,
                    source=source,
                    kind=source_kind(source, trigger.is_content_id),
                    folder=str(path.parent),
                    trigger_path=rel_path,
                    sha256_expected=trigger.sha256,
                    filename_hint=trigger.filename,
                    stem=path.stem,
                    metainfo=trigger.metainfo,
                    send_to=",".join(trigger.send_to) or None,
                    secrets=secrets,
                )

    def _latest_in_folder(self, user: str, folder: str, trigger: Trigger) -> dict[str, Task]:
        """The newest task for each of the trigger's sources in `folder`, made with the same
        options (checksum, file name), by this trigger or any other."""
        latest: dict[str, Task] = {}
        for task in self.tasks.in_folder_for_sources(user, folder, trigger.sources):
            if task.sha256_expected == trigger.sha256 and task.filename_hint == trigger.filename:
                latest[task.source] = task
        return latest

    def _still_there(self, task: Task) -> bool:
        return bool(task.path) and (self._spaces.root(task.user) / str(task.path)).is_file()

    def path_removed(self, user: str, rel_path: str) -> None:
        """A trigger (or a folder holding triggers) was deleted or moved away: cancel."""
        for task in self.tasks.under_trigger_prefix(user, rel_path.rstrip("/")):
            self._cancel(task)

    def placeholders(self, user: str, folder: str) -> list[Placeholder]:
        shown: list[Placeholder] = []
        names: set[str] = set()
        for task in self.tasks.unfinished_in_folder(user, folder):
            running = self._running.get(task.id)
            size = running.download.bytes_done if running and running.download else task.bytes_done
            name = f"{task.display_name}{PART_SUFFIX}"
            if name in names:
                name = f"{task.display_name} (task {task.id}){PART_SUFFIX}"
            names.add(name)
            shown.append(Placeholder(name, size, task.updated_at, task.temp_path))
        if folder == "downloads":
            status = self.status_text(user)
            if status:
                data = status.encode()
                shown.append(Placeholder(STATUS_FILE, len(data), time.time(), None, data))
        return shown

    def status_text(self, user: str) -> str:
        """Unfinished and failed downloads as plain text, one line each; empty when none."""
        lines = []
        for task in self.tasks.unfinished_for_user(user):
            live = self.live_progress(task.id)
            done = live[0] if live else task.bytes_done
            if task.bytes_total:
                progress = f"{100 * done // task.bytes_total} % of {_human(task.bytes_total)}"
            else:
                progress = f"{_human(done)} so far, size not known yet"
            speed = f", {_human(done / live[1])}/s" if live and live[1] > 0 else ""
            note = f" ({task.error})" if task.error else ""
            lines.append(f"{task.display_name}: {task.state}, {progress}{speed}{note}")
        for task in self.tasks.for_user(user, state=TaskState.FAILED, limit=50):
            lines.append(f"{task.display_name}: failed: {task.error}")
        if not lines:
            return ""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return f"fetchdrive downloads, {stamp}\n\n" + "\n".join(lines) + "\n"

    def _hold_room_of_saved_bytes(self, user: str) -> None:
        """Reservations live in memory: at start, the partial downloads kept on disk take
        their room in the quota again."""
        for task in self.tasks.unfinished_for_user(user):
            self._hold_only_saved_bytes(task)

    def _allowance(self, task: Task) -> Allowance:
        with self._allowances_lock:
            if task.id not in self._allowances:
                self._allowances[task.id] = self._spaces.reserve(task.user)
            return self._allowances[task.id]

    def _drop_allowance(self, task: Task) -> Allowance | None:
        with self._allowances_lock:
            return self._allowances.pop(task.id, None)

    def _pick_up_waiting_triggers(self, user: str) -> None:
        """Triggers that arrived just before a crash may have no task yet."""
        downloads = self._spaces.root(user) / "downloads"
        for folder, _dirs, files in os.walk(downloads):
            for file_name in files:
                if not is_trigger_name(file_name) or file_name + ERROR_SUFFIX in files:
                    continue
                rel = os.path.relpath(os.path.join(folder, file_name), self._spaces.root(user)).replace(os.sep, "/")
                if self.tasks.for_trigger(user, rel):
                    self._lingering.schedule(user, rel)  # goes if its downloads finished meanwhile
                elif os.path.getsize(os.path.join(folder, file_name)) and not self.tasks.delivered_to(user, rel):
                    self.trigger_ready(user, rel)

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
            self._torrent_paths(task)[1].write_bytes(metainfo)
        self.wake()
        return self.tasks.get(task.id)

    def cancel(self, task_id: int) -> bool:
        task = self.tasks.get(task_id)
        return task is not None and self._cancel(task)

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
        self.tasks.update(task.id, state=TaskState.QUEUED, error=None, attempts=0, first_failure_at=None,
                          next_attempt_at=None, finished_at=None, bytes_done=0, segments=None)
        if task.trigger_path:
            self._remove_error_file(task.user, task.trigger_path)
        self.wake()
        return self.tasks.get(task.id)

    def live_torrent(self, task_id: int) -> TorrentProgress | None:
        """Peers, seeds and rate of a running torrent."""
        running = self._running.get(task_id)
        return running.torrent if running else None

    def live_progress(self, task_id: int) -> tuple[int, float] | None:
        """(bytes done, seconds running) of a running task, for speed and ETA."""
        running = self._running.get(task_id)
        if running is None or running.download is None:
            return None
        return running.download.bytes_done, time.monotonic() - running.started

    def _cancel(self, task: Task) -> bool:
        if not self.tasks.set_state_if(task.id, UNFINISHED, state=TaskState.CANCELLED, finished_at=time.time()):
            return False
        with self._cond:
            running = self._running.get(task.id)
            if running:
                running.cancel.set()  # the worker frees the temporary data
                return True
        self._discard_temp(task)
        return True

    # --- workers ----------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            claimed = self._claim()
            if claimed is not None:
                task, running = claimed
                try:
                    self._run(task, running)
                finally:
                    with self._cond:
                        self._running.pop(task.id, None)
                        self._cond.notify_all()

    def _claim(self) -> tuple[Task, _Running] | None:
        with self._cond:
            while not self._stopping.is_set():
                if len(self._running) < self.settings.workers:
                    task = self._pick(self.tasks.runnable(time.time()))
                    if task is not None and self.tasks.set_state_if(task.id, (TaskState.QUEUED, TaskState.WAITING), state=TaskState.DOWNLOADING):
                        running = _Running(task.id, task.user, task.source, threading.Event(), started=time.monotonic())
                        self._running[task.id] = running
                        return task, running
                next_wake = self.tasks.next_wake()
                timeout = 1.0 if next_wake is None else max(0.05, min(1.0, next_wake - time.time()))
                self._cond.wait(timeout)
        return None

    def _pick(self, candidates: list[Task]) -> Task | None:
        per_user: dict[str, int] = {}
        for running in self._running.values():
            per_user[running.user] = per_user.get(running.user, 0) + 1
        busy_sources = {running.source for running in self._running.values()}
        eligible = [
            task for task in candidates
            if per_user.get(task.user, 0) < self.settings.per_user and task.source not in busy_sources
        ]
        return min(eligible, key=lambda task: (per_user.get(task.user, 0), task.id), default=None)

    def _run(self, task: Task, running: _Running) -> None:
        try:
            if self._spaces.disk_room() <= 0:
                raise LocalStorageError("the server's disk is almost full (storage.min_free); waiting for space")
            if task.kind == SourceKind.TORRENT:
                self._run_torrent(task, running)
                return
            login = read_login(self._spaces.root(task.user), task.origin_headers)
            if self._deliver_instantly(task, login):
                return
            download = self._transfer(task, running, login)
            self._finish(task, running, download)
        except Cancelled:
            if not self._stopping.is_set():
                self._discard_temp(task)
        except TransientError as error:
            self._retry_later(task, error)
        except PermanentError as error:
            self._fail(task, str(error))
        except Exception as error:
            local = local_storage_error(error)
            if local is None:
                _log.exception("task %d: unexpected error", task.id)
                self._fail(task, "an internal error stopped this download; the server log has the details")
                return
            _log.warning("task %d waits for the server's disk: %r", task.id, error)
            self._retry_later(task, local)

    def _resolve(self, task: Task) -> list[tuple[str, str | None, str | None]]:
        """(url, expected sha256, file name) candidates for the task's source, in order."""
        if task.kind == SourceKind.URL:
            return [(task.source, task.sha256_expected, task.filename_hint)]
        content_id = task.source
        if is_content_hash(task):
            digest = content_id[7:].lower()
            expected = expected_sha256(task, digest)
            if not self.settings.mirrors:
                # The same words whether or not anyone holds the content (SPEC 5).
                raise PermanentError(
                    f"content {content_id} can only be fetched from a mirror, and no mirror is configured (engine.mirrors)"
                )
            return [(url, expected, task.filename_hint) for url in mirror_urls(self.settings.mirrors, digest)]
        entry = self.catalog.get(content_id)
        if entry is None:
            raise PermanentError(
                f"unknown content ID {content_id!r}: this server has no entry for it; check the ID, "
                "or ask the server's administrator to add it"
            )
        return [(entry.url, expected_sha256(task, entry.sha256), task.filename_hint or entry.filename)]

    def _transfer(self, task: Task, running: _Running, login: Login) -> Download:
        candidates = self._resolve(task)
        last_error: FetchError | None = None
        for url, expected, filename in candidates:
            if url.lower().startswith("magnet:"):  # a catalog entry; triggers and the API make torrent tasks
                raise PermanentError("a catalog ID cannot name a magnet link yet; drop the magnet link itself into downloads/")
            download = Download(
                url=url,
                temp_path=Path(task.temp_path or self.temp_root / f"{task.id}.part"),
                bytes_done=task.bytes_done,
                bytes_total=task.bytes_total,
                etag=task.etag,
                last_modified=task.last_modified,
                final_url=task.final_url,
                segments=json.loads(task.segments) if task.segments else None,
                login=login.at(url),
            )
            running.download = download
            save_progress = ProgressSaver(lambda d: self._save_progress(task, d), PROGRESS_EVERY)
            try:
                transfer(
                    self._fetcher,
                    download,
                    connections=self.settings.connections_per_task,
                    on_progress=save_progress,
                    is_cancelled=lambda: running.cancel.is_set(),
                    room=self._allowance(task).claim,
                    throttle=self._bandwidth.throttle(task.user),
                )
            except PermanentError as error:
                if not is_content_hash(task):
                    raise
                last_error = error
                continue
            finally:
                save_progress.flush()  # the next try, or a restart, resumes from the last figure
            if expected:
                self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), state=TaskState.VERIFYING)
                digest = download.sha256()
                if digest != expected.lower():
                    self._discard_temp(task)
                    raise checksum_mismatch(expected.lower(), digest)
            task.filename_hint = filename
            task.fetched_url = url
            return download
        raise PermanentError(f"no mirror had content {task.source}: {last_error}")

    def _save_progress(self, task: Task, download: Download) -> None:
        self.tasks.update(
            task.id,
            bytes_done=download.bytes_done,
            bytes_total=download.bytes_total,
            etag=download.etag,
            last_modified=download.last_modified,
            final_url=download.final_url,
            display_name=self._final_name(task, download),
            segments=json.dumps(download.segments) if download.segments else None,
        )

    # --- torrents -----------------------------------------------------------

    def _torrent_paths(self, task: Task) -> tuple[Path, Path]:
        """Where a torrent task keeps its data, and its metainfo once known."""
        return self.temp_root / f"{task.id}.bt", self.temp_root / f"{task.id}.torrent"

    def _torrents(self) -> TorrentClient:
        """The libtorrent session, started with the first torrent (most servers never need it)."""
        with self._cond:
            if self._torrent_client is None:
                self._torrent_client = TorrentClient(
                    self.settings.torrent, allow_private=self.settings.allow_private_networks,
                    allowlist=self.settings.private_allowlist,
                )
            return self._torrent_client

    def _run_torrent(self, task: Task, running: _Running) -> None:
        if self._deliver_torrent_from_store(task):
            return
        save_dir, metainfo_path = self._torrent_paths(task)
        download = Download(url=task.source, temp_path=save_dir, bytes_done=task.bytes_done, bytes_total=task.bytes_total)
        running.download, running.torrent = download, TorrentProgress()
        saved_at = 0.0

        def on_progress(done: int, meta: Metainfo) -> None:
            nonlocal saved_at
            download.bytes_done, download.bytes_total = done, meta.total_size
            if time.monotonic() - saved_at >= 1:
                saved_at = time.monotonic()
                self.tasks.update(task.id, bytes_done=done, bytes_total=meta.total_size, display_name=meta.name)

        meta = self._torrents().fetch(
            task.source, save_dir, metainfo_path, progress=running.torrent, on_progress=on_progress,
            is_cancelled=running.cancel.is_set, room=self._allowance(task).claim,
        )
        task.display_name = meta.name
        self.tasks.update(task.id, display_name=meta.name, bytes_done=meta.total_size, bytes_total=meta.total_size)
        self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), state=TaskState.VERIFYING)
        if running.cancel.is_set():
            raise Cancelled()
        self._deliver_torrent(task, meta, save_dir)

    def _deliver_torrent(self, task: Task, meta: Metainfo, save_dir: Path) -> None:
        """Publish a completed torrent, file its files in the content store, shelve its manifest."""
        sources = [(save_dir / f.disk_path, f.path) for f in meta.files]
        if meta.multi_file:
            staging = self.temp_root / f"{task.id}.deliver"
            stage_tree(sources, staging / meta.name)
            placed = self._publish(task, staging / meta.name, meta.name, digest=None, instant=False)
            if placed is None:
                raise Cancelled()
            published = [placed.joinpath(*parts) for _source, parts in sources]
        else:
            stage_tree(sources[:1], save_dir / "whole")  # a zero-length file may not exist yet
            placed = self._publish(task, save_dir / "whole" / meta.files[0].path[-1], meta.name, digest=None, instant=False)
            if placed is None:
                raise Cancelled()
            published = [placed]
        filed = []
        for (source, parts), user_copy, file in zip(sources, published, meta.files):
            digest = file_sha256(user_copy).hexdigest()
            if source.exists():
                self.store.adopt(source, digest, user_copy, self._spaces.locked)
            filed.append(ShelvedFile(parts, digest, file.size))
        if not meta.multi_file:
            self.tasks.update(task.id, sha256=filed[0].sha256)
        self.shelf.record(meta.info_hash, ShelvedTorrent(meta.name, meta.multi_file, tuple(filed)))
        if self._torrents().seeds:
            tree = self.temp_root / "seeding" / f"{task.id}"
            stage_tree([(self.store.object_path(kept.sha256), (file.disk_path,)) for file, kept in zip(meta.files, filed)], tree)
            self._torrents().seed(self._torrent_paths(task)[1].read_bytes(), tree)
        self._remove_torrent_temp(task)

    def _deliver_torrent_from_store(self, task: Task) -> bool:
        """A torrent delivered before (same info-hash) comes from the store, without the swarm."""
        shelved = self.shelf.get(magnet_info_hash(task.source))
        if shelved is None or not all(self.store.has(f.sha256) for f in shelved.files):
            return False
        self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), state=TaskState.VERIFYING)
        self._discard_temp(task)
        if shelved.multi_file:
            staging = self.temp_root / f"{task.id}.deliver" / shelved.name
            stage_tree([(self.store.object_path(f.sha256), f.path) for f in shelved.files], staging)
            self._publish(task, staging, shelved.name, digest=None, instant=True)
            self._remove_torrent_temp(task)
        else:
            digest = shelved.files[0].sha256
            self._publish(task, self.store.object_path(digest), shelved.name, digest=digest, instant=True)
        return True

    # --- outcomes ---------------------------------------------------------

    def _final_name(self, task: Task, download: Download) -> str:
        """SPEC 4.4: the trigger's name, else Content-Disposition, else the URL's last segment."""
        if task.kind == SourceKind.TORRENT:
            return task.display_name
        url = download.final_url or download.url
        if task.kind == SourceKind.ID:
            # An ID's name: the catalog's or trigger's filename, the mirror's Content-Disposition
            # or URL name (unless that is only the hash, as `{sha256}` templates make), the stem.
            named_by_hash = _SHA256_IN_NAME.search(PurePosixPath(urlsplit(url or "").path).name) is not None
            return choose_filename(trigger_filename=task.filename_hint, content_disposition=download.content_disposition,
                                   final_url=None if named_by_hash else url, trigger_stem=task.display_name)
        return choose_filename(
            trigger_filename=task.filename_hint,
            content_disposition=download.content_disposition,
            final_url=url,
            trigger_stem=PurePosixPath(task.trigger_path).stem if task.trigger_path else "download",
        )

    def _finish(self, task: Task, running: _Running, download: Download) -> None:
        """Publish the downloaded file, then file it in the content store. The file appears as
        soon as its bytes are complete; the hash may still be catching up (see `segments`), so
        the task's sha256 follows a moment later (a checksum to verify was checked before)."""
        if running.cancel.is_set():
            raise Cancelled()
        filed: Future[str] = Future()
        self._filing[task.id] = filed
        try:
            placed = self._publish(task, download.temp_path, self._final_name(task, download), digest=None,
                                   instant=False, validators=(download.etag, download.last_modified))
            if placed is None:
                raise Cancelled()
            digest = download.sha256()
            self._file_away(task, download.temp_path, digest, placed)
            filed.set_result(digest)
        finally:
            if not filed.done():
                filed.set_result("")
            del self._filing[task.id]

    def _file_away(self, task: Task, temp: Path, digest: str, placed: Path) -> None:
        self.store.adopt(temp, digest, placed, self._spaces.locked)
        self.tasks.update(task.id, sha256=digest)

    def _publish(self, task: Task, source: Path, name: str, *, digest: str | None, instant: bool,
                 validators: tuple[str | None, str | None] = (None, None)) -> Path | None:
        """Hard-link the file `source`, or rename the folder `source`, into the task's folder
        and mark the task done; None if it was cancelled at the last moment."""
        folder = source.is_dir()
        size = tree_size(source) if folder else source.stat().st_size
        allowance = self._allowance(task)
        if allowance.claim(size) < size:
            raise PermanentError(
                f"not enough space: the file is {size} bytes and the quota leaves {allowance.held} bytes; "
                "delete some files first"
            )
        place = move_under_free_name if folder else link_under_free_name
        placed = place(source, self._spaces.root(task.user) / task.folder, name)
        allowance.settle(size)
        self._drop_allowance(task)
        etag, last_modified = validators
        rel = f"{task.folder}/{placed.name}"
        if not self.tasks.set_state_if(
            task.id, (TaskState.DOWNLOADING, TaskState.VERIFYING), state=TaskState.DONE, path=rel, sha256=digest, bytes_done=size,
            bytes_total=size, error=None, finished_at=time.time(), instant=int(instant),
            etag=etag or task.etag, last_modified=last_modified or task.last_modified, fetched_url=task.fetched_url,
        ):
            # Cancelled at the last moment: take the file back.
            shutil.rmtree(placed) if folder else placed.unlink()
            self._spaces.charge(task.user, -size)
            return None
        _log.info("task %d done: %s (%d bytes%s)", task.id, rel, size, ", instant" if instant else "")
        self.tasks.supersede(task.id)
        self.notifier.notify(self._spaces.root(task.user), Message(
            f"fetchdrive: {placed.name} is ready", f"{placed.name} ({_human(size)}) finished downloading into {task.folder}/."))
        self._trigger_finished(task)
        return placed

    def _deliver_instantly(self, task: Task, login: Login) -> bool:
        """Content this server already holds, and the task's own source leads to (see
        engine/instant.py), asked with the task's own `login`, is delivered without a transfer."""
        held = self._instant.find(task, login)
        if held is None:
            return False
        self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), state=TaskState.VERIFYING)
        self._discard_temp(task)
        task.fetched_url = held.fetched_url
        name = sanitize_filename(task.filename_hint or held.name)
        try:
            self._publish(task, self.store.object_path(held.digest), name, digest=held.digest, instant=True,
                          validators=(held.etag, held.last_modified))
        except FileNotFoundError:
            return False  # `fetchdrive gc` took the object just now: transfer it instead
        return True

    def _store_holds(self, digest: str) -> bool:
        """Whether a user's file links to the stored `digest`, counting downloads published
        but still being filed."""
        if self.store.linked(digest):
            return True
        for filing in list(self._filing.values()):
            filing.result()
        return self.store.linked(digest)

    def _filed_digest(self, task_id: int) -> str | None:
        """The digest of a finished task, waiting for it if the task is still being filed away."""
        filing = self._filing.get(task_id)
        if filing is not None:
            return filing.result() or None
        task = self.tasks.get(task_id)
        return task.sha256 if task else None

    def _retry_later(self, task: Task, error: TransientError | LocalStorageError) -> None:
        """Park the task as waiting. Network faults count towards engine.retry.give_up_after;
        a fault of the server's own disk does not, and ends a run of network faults."""
        current = self.tasks.get(task.id)
        if current is None or current.state not in (TaskState.DOWNLOADING, TaskState.VERIFYING):
            return
        now = time.time()
        attempts = current.attempts + 1
        first_failure = None if isinstance(error, LocalStorageError) else current.first_failure_at or now
        if first_failure is not None and self.settings.retry.gives_up(first_failure, now):
            self._fail(task, f"{error} (gave up after {attempts} tries over {int(now - first_failure)} s)")
            return
        wait = self.settings.retry.wait_before(attempts, error.retry_after if isinstance(error, TransientError) else None)
        self._hold_only_saved_bytes(task)
        self.tasks.set_state_if(
            task.id, (TaskState.DOWNLOADING, TaskState.VERIFYING), state=TaskState.WAITING, attempts=attempts, first_failure_at=first_failure,
            next_attempt_at=now + wait, error=f"{error}; retrying in {wait:.0f} s",
        )
        _log.info("task %d: %s; retry %d in %.1f s", task.id, error, attempts, wait)

    def _hold_only_saved_bytes(self, task: Task) -> None:
        """While a task waits between tries, its room in the quota is what it has saved (even
        over the quota: the bytes are there)."""
        try:
            saved = os.path.getsize(task.temp_path) if task.temp_path else 0
        except FileNotFoundError:
            saved = 0
        self._allowance(task).claim(saved, force=True)

    def _fail(self, task: Task, reason: str) -> None:
        if not self.tasks.set_state_if(task.id, UNFINISHED, state=TaskState.FAILED, error=reason, finished_at=time.time()):
            return
        _log.info("task %d failed: %s", task.id, reason)
        self.notifier.notify(self._spaces.root(task.user), Message(
            f"fetchdrive: {task.display_name} failed", f"The download of {task.display_name} failed: {reason}"))
        self._discard_temp(task)
        if task.trigger_path:
            self._report_trigger_errors(task)

    def _trigger_finished(self, task: Task) -> None:
        """A download finished: its trigger goes after the linger time, if all its others did."""
        if task.trigger_path:
            self._lingering.schedule(task.user, task.trigger_path)

    def _remove_finished_trigger(self, user: str, rel_path: str) -> None:
        """Remove the trigger at `rel_path` if every download it now asks for is done (it may
        have been uploaded again with other links, or replaced by a broken file, meanwhile)."""
        trigger_file = self._spaces.root(user) / rel_path
        with self._trigger_lock, self._spaces.locked(trigger_file):
            try:
                with open(trigger_file, "rb") as handle:
                    data = handle.read(MAX_TRIGGER_BYTES + 1)
                trigger = parse_trigger(trigger_file.name, data)
            except (OSError, TriggerError):
                return
            latest = self._latest_in_folder(user, str(PurePosixPath(rel_path).parent), trigger)
            if not all(source in latest and latest[source].state == TaskState.DONE for source in trigger.sources):
                return
            for path in (trigger_file, trigger_file.with_name("._" + trigger_file.name)):  # and Finder's AppleDouble file
                try:
                    size = path.stat().st_size
                    path.unlink()
                    self._spaces.charge(user, -size)
                    self.events.publish(user, "file.deleted", {"path": str(path.relative_to(self._spaces.root(user)))})
                except FileNotFoundError:
                    pass
            self._remove_error_file(user, rel_path)

    def _report_trigger_errors(self, task: Task) -> None:
        latest: dict[str, Task] = {}
        for sibling in self.tasks.for_trigger(task.user, task.trigger_path):
            latest[sibling.source] = sibling
        failed = [t for t in latest.values() if t.state == TaskState.FAILED]
        name = PurePosixPath(task.trigger_path).name
        lines = [f"{t.source}: {t.error}" for t in failed]
        what = lines[0] if len(lines) == 1 else f"{len(lines)} downloads failed: " + "; ".join(lines)
        self._write_error_file(
            task.user, task.trigger_path,
            f"fetchdrive could not download from {name}. {what}. "
            f"To try again, upload {name} again; to give up, delete it.",
        )

    # --- files beside the trigger -----------------------------------------

    def _error_file(self, user: str, rel_path: str) -> Path:
        return self._spaces.root(user) / (rel_path + ERROR_SUFFIX)

    def _write_error_file(self, user: str, rel_path: str, text: str) -> None:
        target = self._error_file(user, rel_path)
        if not target.parent.is_dir():
            return
        body = (text.rstrip() + "\n").encode()
        try:
            old_size = target.stat().st_size
        except FileNotFoundError:
            old_size = 0
        temp = self.temp_root / f"error-{os.getpid()}-{threading.get_ident()}.tmp"
        temp.write_bytes(body)
        os.replace(temp, target)
        self._spaces.charge(user, len(body) - old_size)
        self.events.publish(user, "file.changed" if old_size else "file.created", {"path": rel_path + ERROR_SUFFIX})

    def _remove_error_file(self, user: str, rel_path: str) -> None:
        target = self._error_file(user, rel_path)
        try:
            size = target.stat().st_size
            target.unlink()
            self._spaces.charge(user, -size)
            self.events.publish(user, "file.deleted", {"path": rel_path + ERROR_SUFFIX})
        except FileNotFoundError:
            pass

    def _discard_temp(self, task: Task) -> None:
        path = Path(task.temp_path) if task.temp_path else self.temp_root / f"{task.id}.part"
        path.unlink(missing_ok=True)
        self._remove_torrent_temp(task)
        allowance = self._drop_allowance(task)
        if allowance is not None:
            allowance.release()
        self.tasks.update(task.id, bytes_done=0, etag=None, last_modified=None, segments=None)

    def _remove_torrent_temp(self, task: Task) -> None:
        if task.kind == SourceKind.TORRENT:
            for item in self.temp_root.glob(f"{task.id}.*"):
                _remove_temp(item)

    def _remove_orphan_temp_files(self) -> None:
        """Temporary files nobody needs go; a published download that a crash kept from being
        filed in the content store is filed now, on a thread of its own (it needs hashing)."""
        unfiled: list[tuple[Task, Path]] = []
        for item in self.temp_root.iterdir():
            stem = item.name.split(".", 1)[0]
            task = self.tasks.get(int(stem)) if stem.isdigit() else None
            if task is not None and task.state == TaskState.DONE and not task.sha256 and task.path and item.suffix == ".part":
                unfiled.append((task, item))
            elif task is None or not task.unfinished:
                _remove_temp(item)
        if unfiled:
            threading.Thread(target=self._file_away_after_restart, args=(unfiled,), name="filing", daemon=True).start()

    def _file_away_after_restart(self, unfiled: list[tuple[Task, Path]]) -> None:
        for task, temp in unfiled:
            try:
                digest = file_sha256(temp).hexdigest()
                self._file_away(task, temp, digest, self._spaces.root(task.user) / task.path)
            except OSError as error:
                _log.warning("task %d: could not file %s in the content store: %s", task.id, temp, error)
