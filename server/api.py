"""The JSON API under /api/v1/: a user's tasks, adding and cancelling downloads, their quota.

Same accounts as the drive (Basic auth, throttled). A task of another user is reported as
404, never 403, so IDs leak nothing. The task list is a JSON array, newest first; the next
page is announced in a `Link: <...>; rel="next"` header (`limit` and `cursor` parameters).
The routes parse the request, call one service (server/task_service.py) and render its
answer; a service's refusal (server/service_errors.py) becomes a 4xx with its sentence.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs

from engine.engine import DownloadEngine
from engine.notifications import NOTIFY_FILE
from provider.domain import Authenticator, LoginRefused
from provider.quota import Quota
from server.openapi import OPENAPI
from server.service_errors import Conflict, Invalid, NoRoom, NotFound, ServiceError
from server.task_service import DownloadRequest, TaskService

if TYPE_CHECKING:
    from server.shares_api import SharesApi

MAX_BODY = 64 * 1024
_TASK_PATH = re.compile(r"^/api/v1/tasks/(\d+)(/retry)?$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


_REFUSALS: dict[type[ServiceError], int] = {Invalid: 400, NotFound: 404, Conflict: 409, NoRoom: 507}


def refusal_status(error: ServiceError) -> int:
    """The HTTP status of a service's refusal."""
    return next(status for kind, status in _REFUSALS.items() if isinstance(error, kind))


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
        self._tasks = TaskService(engine, quota)
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
        except ServiceError as error:
            status, payload = refusal_status(error), {"error": str(error)}
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
            task_id, action = int(match.group(1)), match.group(2)
            self._tasks.own(request.user, task_id)  # another user's task is a 404 whatever the method
            if action and request.method == "POST":
                return 200, self._tasks.describe(self._tasks.retry(request.user, task_id))
            if not action and request.method == "GET":
                return 200, self._tasks.describe(self._tasks.own(request.user, task_id))
            if not action and request.method == "DELETE":
                return 200, self._tasks.describe(self._tasks.cancel(request.user, task_id))
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        if self._shares is not None and self._shares.handles(request.path):
            return self._shares.route(request)
        if request.path in {path for _method, path in routes}:
            raise ApiError(405, f"{request.method} is not allowed on {request.path}")
        raise ApiError(404, f"no API route {request.path}; see /api/v1/openapi.json")

    # --- handlers -----------------------------------------------------------

    def list_tasks(self, request: Request, headers: list[tuple[str, str]]) -> tuple[int, Any]:
        state = request.query.get("state", [None])[0]
        try:
            limit = int(request.query.get("limit", ["100"])[0])
            cursor = request.query.get("cursor", [None])[0]
            before = int(cursor) if cursor is not None else None
        except ValueError:
            raise ApiError(400, "limit and cursor must be whole numbers") from None
        page = self._tasks.page(request.user, state=state, before=before, limit=limit)
        if page.next_cursor is not None:
            query = f"limit={limit}&cursor={page.next_cursor}" + (f"&state={state}" if state else "")
            headers.append(("Link", f'</api/v1/tasks?{query}>; rel="next"'))
        return 200, [self._tasks.describe(task) for task in page.tasks]

    def add_task(self, request: Request) -> tuple[int, Any]:
        body = request.json()
        unknown = body.keys() - {"url", "id", "filename", "sha256", "folder"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}")
        task = self._tasks.add(request.user, DownloadRequest(
            url=_text_field(body, "url"), content_id=_text_field(body, "id"), filename=_text_field(body, "filename"),
            sha256=_text_field(body, "sha256"), folder=_text_field(body, "folder"),
        ))
        return 201, self._tasks.describe(task)

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
