"""The JSON API under /api/v1/: a user's tasks, adding and cancelling downloads, their quota.

Same accounts as the drive (Basic auth, throttled). A task of another user is reported as
404, never 403, so IDs leak nothing. The task list is a JSON array, newest first; the next
page is announced in a `Link: <...>; rel="next"` header (`limit` and `cursor` parameters).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from engine.engine import DownloadEngine, RetryRefused
from engine.naming import client_name_problem
from engine.notifications import NOTIFY_FILE
from engine.kinds import SourceKind, TaskState
from engine.tasks import Task
from engine.triggers import TriggerError, parse_trigger
from provider.domain import Authenticator, LoginRefused
from provider.quota import Quota
from server.openapi import OPENAPI

if TYPE_CHECKING:
    from server.shares_api import SharesApi

MAX_BODY = 64 * 1024
_TASK_PATH = re.compile(r"^/api/v1/tasks/(\d+)(/retry)?$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 415: "Unsupported Media Type",
            429: "Too Many Requests", 507: "Insufficient Storage"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    user: str
    environ: dict

    def json(self) -> dict[str, Any]:
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise ApiError(400, "Content-Length is not a number") from None
        if length > MAX_BODY:
            raise ApiError(413, f"request body too large (limit {MAX_BODY} bytes)")
        raw = self.environ["wsgi.input"].read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, 'request body must be a JSON object such as {"url": "https://..."}')
        return body


def _text_field(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
        raise ApiError(400, f"field {name!r} must be a non-empty single-line string")
    return value.strip()


class Api:
    def __init__(self, engine: DownloadEngine, authenticator: Authenticator, quota: Quota,
                 shares: SharesApi | None = None) -> None:
        """`shares`: the share-link routes (server.shares_api.SharesApi), kept in their own module."""
        self._engine = engine
        self._shares = shares
        self._authenticator = authenticator
        self._quota = quota
        # Routes other modules serve under a path prefix (server.devices_api).
        self.extra_routes: dict[str, Callable[[Request], tuple[int, Any]]] = {}

    # --- WSGI ---------------------------------------------------------------

    def __call__(self, environ, start_response):
        headers: list[tuple[str, str]] = []
        try:
            if environ["PATH_INFO"] == "/api/v1/openapi.json":
                status, payload = 200, OPENAPI
            else:
                request = Request(
                    environ["REQUEST_METHOD"], environ["PATH_INFO"],
                    parse_qs(environ.get("QUERY_STRING", "")), self.authenticate(environ), environ,
                )
                status, payload = self._route(request, headers)
        except ApiError as error:
            status, payload = error.status, {"error": str(error)}
            headers += error.headers
        body = json.dumps(payload, indent=1).encode()
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")]
        start_response(f"{status} {_REASONS.get(status, '')}", headers)
        return [body]

    def authenticate(self, environ) -> str:
        try:
            return self._authenticator.login(environ)
        except LoginRefused as refusal:
            raise ApiError(refusal.status, str(refusal), refusal.headers()) from None

    def _route(self, request: Request, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        routes: dict[tuple[str, str], Callable[..., tuple[int, Any]]] = {
            ("GET", "/api/v1/tasks"): lambda: self.list_tasks(request, headers),
            ("POST", "/api/v1/tasks"): lambda: self.add_task(request),
            ("GET", "/api/v1/me"): lambda: self.me(request),
            ("GET", "/api/v1/notifications"): lambda: (200, {"targets": self._engine.notification_targets(request.user)}),
            ("POST", "/api/v1/notifications/test"): lambda: self.test_notifications(request),
        }
        if (request.method, request.path) in routes:
            return routes[(request.method, request.path)]()
        for prefix, handler in self.extra_routes.items():
            if request.path == prefix or request.path.startswith(prefix + "/"):
                return handler(request)
        match = _TASK_PATH.match(request.path)
        if match:
            task = self._own_task(request.user, int(match.group(1)))
            if match.group(2) and request.method == "POST":
                return self.retry(task)
            if not match.group(2) and request.method == "GET":
                return 200, self.describe(task)
            if not match.group(2) and request.method == "DELETE":
                return self.cancel(task)
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        if self._shares is not None and self._shares.handles(request.path):
            return self._shares.route(request)
        if request.path in {path for _method, path in routes}:
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        raise ApiError(404, f"no API route {request.path}; see /api/v1/openapi.json")

    # --- handlers -----------------------------------------------------------

    def _own_task(self, user: str, task_id: int) -> Task:
        task = self._engine.tasks.get(task_id)
        if task is None or task.user != user:
            raise ApiError(404, f"no task {task_id}")
        return task

    def describe(self, task: Task) -> dict[str, Any]:
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

    def list_tasks(self, request: Request, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        asked = request.query.get("state", [None])[0]
        try:
            state = TaskState(asked) if asked is not None else None
        except ValueError:
            raise ApiError(400, f"unknown state {asked!r}; use one of {', '.join(TaskState)}") from None
        try:
            limit = int(request.query.get("limit", ["100"])[0])
            cursor = request.query.get("cursor", [None])[0]
            before = int(cursor) if cursor is not None else None
        except ValueError:
            raise ApiError(400, "limit and cursor must be whole numbers") from None
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        tasks = self._engine.tasks.for_user(request.user, state=state, before_id=before, limit=limit + 1)
        page = tasks[:limit]
        if len(tasks) > limit:
            query = f"limit={limit}&cursor={page[-1].id}" + (f"&state={state}" if state else "")
            headers.append(("Link", f'</api/v1/tasks?{query}>; rel="next"'))
        return 200, [self.describe(task) for task in page]

    def add_task(self, request: Request) -> tuple[int, Any]:
        body = request.json()
        unknown = body.keys() - {"url", "id", "filename", "sha256", "folder"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}")
        url, content_id = _text_field(body, "url"), _text_field(body, "id")
        if (url is None) == (content_id is None):
            raise ApiError(400, 'give exactly one of "url" or "id"')
        lines = [url or content_id]
        for key in ("sha256", "filename"):
            value = _text_field(body, key)
            if value is not None:
                lines.append(f"{key}={value}")
        try:
            trigger = parse_trigger("request.url" if url else "request.id", "\n".join(lines).encode())
        except TriggerError as error:
            raise ApiError(400, str(error)) from None
        folder = self._folder(_text_field(body, "folder"))
        if self._quota.quota_room(request.user) == 0:
            raise ApiError(507, "your quota is used up; delete files before adding downloads")
        task = self._engine.add(
            request.user, source=trigger.sources[0], kind=SourceKind.ID if content_id else SourceKind.URL, folder=folder,
            filename=trigger.filename, sha256=trigger.sha256, secrets=trigger.secrets[0],
        )
        return 201, self.describe(task)

    @staticmethod
    def _folder(folder: str | None) -> str:
        if folder is None:
            return "downloads"
        parts = [part for part in folder.replace("\\", "/").split("/") if part]
        if parts and parts[0] == "downloads":
            parts = parts[1:]
        if any(part in (".", "..") or "\0" in part for part in parts):
            raise ApiError(400, f"folder {folder!r} must be a folder inside downloads/ without '..'")
        for part in parts:
            problem = client_name_problem(part)
            if problem:
                raise ApiError(400, f"folder {part!r}: {problem}")
        return "/".join(["downloads", *parts])

    def cancel(self, task: Task) -> tuple[int, Any]:
        if not self._engine.cancel(task.id):
            raise ApiError(409, f"task {task.id} is already {task.state}")
        return 200, self.describe(self._engine.tasks.get(task.id))

    def retry(self, task: Task) -> tuple[int, Any]:
        if task.state not in (TaskState.FAILED, TaskState.CANCELLED):
            raise ApiError(409, f"task {task.id} is {task.state}; only failed or cancelled tasks can be retried")
        try:
            return 200, self.describe(self._engine.retry(task.id))
        except RetryRefused as refused:
            raise ApiError(409, str(refused)) from None

    def test_notifications(self, request: Request) -> tuple[int, Any]:
        outcomes = self._engine.test_notifications(request.user)
        if not outcomes:
            raise ApiError(409, f"no notification targets: list Apprise URLs in {NOTIFY_FILE} of your drive, one a line")
        return 200, {"results": [{"target": o.target, "ok": o.ok, "error": o.error} for o in outcomes]}

    def me(self, request: Request) -> tuple[int, Any]:
        return 200, {
            "user": request.user,
            "used_bytes": self._quota.used(request.user),
            "quota_bytes": self._quota.quota_bytes(request.user),
            "available_bytes": self._quota.available(request.user),
        }
