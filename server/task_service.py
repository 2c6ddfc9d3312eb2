"""A user's downloads as the API and the web page ask for them: add, list, show, cancel, retry.

A request to download is checked with the trigger parser's own rules (engine/triggers.py),
field by field, so it is refused for the same reasons a trigger file would be, and nothing is
written anywhere before it is valid. A task of another user is reported as not found.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.engine import DownloadEngine, RetryRefused
from engine.naming import client_name_problem
from engine.kinds import SourceKind, TaskState
from engine.tasks import Task
from engine.triggers import TriggerError, request_trigger
from provider.quota import Quota
from server.service_errors import Conflict, Invalid, NoRoom, NotFound

DOWNLOADS = "downloads"
MAX_PAGE = 1000


@dataclass(frozen=True)
class DownloadRequest:
    """What a caller asks to download: exactly one of `url` and `content_id`; `folder` is
    inside downloads/ (None: downloads/ itself)."""

    url: str | None = None
    content_id: str | None = None
    filename: str | None = None
    sha256: str | None = None
    folder: str | None = None


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    next_cursor: int | None  # pass as `before` for the next page; None on the last


def downloads_folder(folder: str | None) -> str:
    """The space path of a folder inside downloads/ ("music" or "downloads/music" both give
    "downloads/music"); Invalid if it could leave downloads/ or has a name no client can use."""
    if folder is None:
        return DOWNLOADS
    parts = [part for part in folder.replace("\\", "/").split("/") if part]
    if parts and parts[0] == DOWNLOADS:
        parts = parts[1:]
    if any(part in (".", "..") or "\0" in part for part in parts):
        raise Invalid(f"folder {folder!r} must be a folder inside downloads/ without '..'")
    for part in parts:
        problem = client_name_problem(part)
        if problem:
            raise Invalid(f"folder {part!r}: {problem}")
    return "/".join([DOWNLOADS, *parts])


class TaskService:
    """The download tasks of each user, on top of the engine."""

    def __init__(self, engine: DownloadEngine, quota: Quota) -> None:
        self._engine = engine
        self._quota = quota

    def add(self, user: str, request: DownloadRequest) -> Task:
        if (request.url is None) == (request.content_id is None):
            raise Invalid('give exactly one of "url" or "id"')
        is_content_id = request.content_id is not None
        try:
            trigger = request_trigger(request.content_id if is_content_id else request.url, is_content_id=is_content_id,
                                      sha256=request.sha256, filename=request.filename)
        except TriggerError as error:
            raise Invalid(str(error)) from None
        folder = downloads_folder(request.folder)
        if self._quota.quota_room(user) == 0:
            raise NoRoom("your quota is used up; delete files before adding downloads")
        return self._engine.add(
            user, source=trigger.sources[0], kind=SourceKind.ID if is_content_id else SourceKind.URL, folder=folder,
            filename=trigger.filename, sha256=trigger.sha256, secrets=trigger.secrets[0],
        )

    def own(self, user: str, task_id: int) -> Task:
        task = self._engine.tasks.get(task_id)
        if task is None or task.user != user:
            raise NotFound(f"no task {task_id}")
        return task

    def page(self, user: str, *, state: str | None = None, before: int | None = None, limit: int = 100) -> TaskPage:
        """The user's tasks, newest first, `limit` at a time."""
        try:
            wanted = TaskState(state) if state is not None else None
        except ValueError:
            raise Invalid(f"unknown state {state!r}; use one of {', '.join(TaskState)}") from None
        if not 1 <= limit <= MAX_PAGE:
            raise Invalid(f"limit must be between 1 and {MAX_PAGE}")
        tasks = self._engine.tasks.for_user(user, state=wanted, before_id=before, limit=limit + 1)
        shown = tasks[:limit]
        return TaskPage(shown, shown[-1].id if len(tasks) > limit else None)

    def cancel(self, user: str, task_id: int) -> Task:
        task = self.own(user, task_id)
        if not self._engine.cancel(task.id):
            raise Conflict(f"task {task.id} is already {task.state}")
        return self.own(user, task_id)

    def retry(self, user: str, task_id: int) -> Task:
        task = self.own(user, task_id)
        if task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise Conflict(f"task {task.id} is {task.state}; only failed or cancelled tasks can be retried")
        try:
            retried = self._engine.retry(task.id)
        except RetryRefused as refused:
            raise Conflict(str(refused)) from None
        return retried or self.own(user, task_id)

    def describe(self, task: Task) -> dict[str, Any]:
        """The task as callers show it, with live speed and time left while it runs."""
        speed = eta = None
        live = self._engine.live_progress(task.id)
        bytes_done = task.bytes_done
        if live:
            bytes_done, seconds = live
            speed = bytes_done / seconds if seconds > 0 else None
            if speed and task.bytes_total:
                eta = max(0.0, (task.bytes_total - bytes_done) / speed)
        return {
            "id": task.id, "source": task.source, "kind": task.kind, "state": task.state,
            "name": task.display_name, "folder": task.folder, "trigger": task.trigger_path,
            "bytes_done": bytes_done, "bytes_total": task.bytes_total, "speed": speed, "eta": eta,
            "path": task.path, "error": task.error, "instant": bool(task.instant), "sha256": task.sha256,
            "attempts": task.attempts, "created_at": task.created_at, "updated_at": task.updated_at,
            "finished_at": task.finished_at, "superseded_by": task.superseded_by,
            "torrent": self._torrent_progress(task.id) if task.kind == SourceKind.TORRENT else None,
        }

    def _torrent_progress(self, task_id: int) -> dict[str, int] | None:
        live = self._engine.live_torrent(task_id)
        return None if live is None else {"peers": live.peers, "seeds": live.seeds, "download_rate": live.download_rate}
