"""Delivery: the last step of a task. The file (or a torrent's folder) is published into the
user's folder under its final name (`final_name`, SPEC 4.4), the task is marked done and the
user notified; then the bytes are filed in the content store. Content the server already
holds is delivered from the store without a transfer (engine/instant.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from engine.allowances import Allowances
from engine.catalog import Catalog
from engine.content_store import ContentStore
from engine.errors import Cancelled, PermanentError
from engine.download import Download
from engine.fetcher import Fetcher
from engine.instant import InstantSource
from engine.naming import choose_filename, sanitize_filename
from engine.notifications import Message, Notifier
from engine.origin_login import Login
from engine.placeholders import human_size
from engine.scheduler import Running
from engine.space_access import SpaceAccess
from engine.kinds import SourceKind, TaskState
from engine.tasks import Task, TaskStore
from engine.temp_area import TempArea
from engine.torrent_shelf import tree_size

_log = logging.getLogger(__name__)

_SHA256_IN_NAME = re.compile(r"[0-9a-fA-F]{64}")


def final_name(task: Task, download: Download) -> str:
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


class Delivery:
    """`trigger_finished(task)` is told of every published task (its trigger may go)."""

    def __init__(self, tasks: TaskStore, store: ContentStore, spaces: SpaceAccess, allowances: Allowances,
                 temp: TempArea, notifier: Notifier, *, fetcher: Fetcher, catalog: Catalog, mirrors: tuple[str, ...],
                 cache_ttl: float, trigger_finished: Callable[[Task], None]) -> None:
        self.tasks = tasks
        self.store = store
        self._spaces = spaces
        self._allowances = allowances
        self._temp = temp
        self.notifier = notifier
        self._trigger_finished = trigger_finished
        self._filing: dict[int, Future[str]] = {}
        self._instant = InstantSource(
            tasks, catalog, store, fetcher, mirrors=mirrors, cache_ttl=cache_ttl,
            holds=self._store_holds, filed_digest=self._filed_digest,
        )

    def finish(self, task: Task, running: Running, download: Download) -> None:
        """Publish the downloaded file, then file it in the content store. The file appears as
        soon as its bytes are complete; the hash may still be catching up (see `segments`), so
        the task's sha256 follows a moment later (a checksum to verify was checked before)."""
        if running.cancel.is_set():
            raise Cancelled()
        filed: Future[str] = Future()
        self._filing[task.id] = filed
        try:
            placed = self.publish(task, download.temp_path, final_name(task, download), digest=None,
                                  instant=False, validators=(download.etag, download.last_modified))
            if placed is None:
                raise Cancelled()
            digest = download.sha256()
            self.file_away(task, download.temp_path, digest, placed)
            filed.set_result(digest)
        finally:
            if not filed.done():
                filed.set_result("")
            del self._filing[task.id]

    def file_away(self, task: Task, temp: Path, digest: str, placed: Path) -> None:
        self.store.adopt(temp, digest, placed, self._spaces.relink)
        self.tasks.update(task.id, sha256=digest)

    def publish(self, task: Task, source: Path, name: str, *, digest: str | None, instant: bool,
                validators: tuple[str | None, str | None] = (None, None)) -> Path | None:
        """Hard-link the file `source`, or rename the folder `source`, into the task's folder
        and mark the task done; None if it was cancelled at the last moment, or another node
        took it over (this one stalled past its lease): that node publishes it."""
        if not self.tasks.holds(task):
            return None
        size = tree_size(source) if source.is_dir() else source.stat().st_size
        root = self._spaces.root(task.user)
        placed = self._published_before(task, source, instant=instant)
        if placed is not None:
            self._allowances.release_room(task)  # the published bytes were booked before the link
        else:
            allowance = self._allowances.allowance(task)
            if allowance.claim(size) < size:
                raise PermanentError(
                    f"not enough space: the file is {size} bytes and the quota leaves {allowance.held} bytes; "
                    "delete some files first"
                )

            def trying(path: Path) -> None:  # recorded first, so a kill after the link leaves it findable
                self.tasks.update(task.id, publishing_to=str(path.relative_to(root)))

            placed = self._spaces.place(source, root / task.folder, name, allowance, size, trying=trying)
            self._allowances.drop_allowance(task)
        etag, last_modified = validators
        rel = f"{task.folder}/{placed.name}"
        if not self.tasks.set_state_if(
            task.id, (TaskState.DOWNLOADING, TaskState.VERIFYING), holder=task.node, state=TaskState.DONE, path=rel, sha256=digest, bytes_done=size,
            bytes_total=size, error=None, finished_at=time.time(), instant=int(instant), publishing_to=None,
            etag=etag or task.etag, last_modified=last_modified or task.last_modified, fetched_url=task.fetched_url,
        ):
            # Cancelled at the last moment: the file goes. Taken over by another node (this one
            # stalled past its lease): it stays for that node to find (`_published_before`), as
            # it would after a kill; that node may have found it already.
            now = self.tasks.get(task.id)
            if now is None or not (now.unfinished or (now.state == TaskState.DONE and now.path == rel)):
                self._spaces.remove(task.user, placed)
            return None
        _log.info("task %d done: %s (%d bytes%s)", task.id, rel, size, ", instant" if instant else "")
        self.tasks.supersede(task.id)
        self.notifier.notify(self._spaces.root(task.user), Message(
            f"fetchdrive: {placed.name} is ready", f"{placed.name} ({human_size(size)}) finished downloading into {task.folder}/."))
        self._trigger_finished(task)
        return placed

    def _published_before(self, task: Task, source: Path, *, instant: bool) -> Path | None:
        """Where a kill left `source` published, after its link (a folder: its move) into the
        task's folder and before the task was marked done; None if it was not published. A
        resumed task is not published twice. Found where the task was publishing it
        (`publishing_to`); a download of the task's own (not a stored object, which may be
        linked anywhere) also under any name the user has given it since."""
        files = source.rglob("*") if source.is_dir() else (source,)
        probe = next((path for path in files if path.is_file() and path.stat().st_nlink > 1), None)
        if probe is None:  # linked nowhere else, so not published
            return None
        root, inside = self._spaces.root(task.user), probe.relative_to(source)
        candidates = [root / task.publishing_to] if task.publishing_to else []
        if not instant:
            with contextlib.suppress(FileNotFoundError), os.scandir(root / task.folder) as entries:
                candidates += [Path(entry.path) for entry in entries]
        info = probe.stat()
        for candidate in candidates:
            try:
                found = (candidate / inside).stat(follow_symlinks=False)
            except OSError:
                continue
            if (found.st_ino, found.st_dev) == (info.st_ino, info.st_dev):
                _log.info("task %d: found published before the server stopped, as %s", task.id, candidate.name)
                return candidate
        return None

    def deliver_instantly(self, task: Task, login: Login) -> bool:
        """Content this server already holds, and the task's own source leads to (see
        engine/instant.py), asked with the task's own `login`, is delivered without a transfer."""
        held = self._instant.find(task, login)
        if held is None:
            return False
        if not self.tasks.set_state_if(task.id, (TaskState.DOWNLOADING,), holder=task.node, state=TaskState.VERIFYING):
            raise Cancelled()  # its data, if another node took it over, is that node's now
        self._temp.discard_temp(task)
        task.fetched_url = held.fetched_url
        name = sanitize_filename(task.filename_hint or held.name)
        try:
            self.publish(task, self.store.object_path(held.digest), name, digest=held.digest, instant=True,
                         validators=(held.etag, held.last_modified))
        except FileNotFoundError:
            return False  # `fetchdrive gc` took the object just now: transfer it instead
        return True

    def _store_holds(self, digest: str) -> bool:
        """Whether a user's file links to the stored `digest`, counting downloads published
        but still being filed here. Another node's filing in progress is not waited for: until
        its object is linked in the store (one atomic link on the shared root), the content
        is not held, and the task transfers it as if it were new."""
        if self.store.linked(digest):
            return True
        for filing in list(self._filing.values()):
            filing.result()
        return self.store.linked(digest)

    def _filed_digest(self, task_id: int) -> str | None:
        """The digest of a finished task, waiting for it if this node is still filing it away;
        None while another node is (the task's sha256 is recorded only once its object is filed)."""
        filing = self._filing.get(task_id)
        if filing is not None:
            return filing.result() or None
        task = self.tasks.get(task_id)
        return task.sha256 if task else None
