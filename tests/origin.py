"""A real HTTP/1.1 origin on loopback for download tests, with fault injection.

Each path serves a `Resource` whose options make it misbehave: fail the first N requests,
drop the connection after N body bytes, stall, throttle, ignore Range, redirect, send a
hostile Content-Disposition, demand a login (Basic credentials: 401; a cookie or a header:
403), checked before anything else. Every request is logged, with its headers and the body
bytes actually sent.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_BLOCK = 16 * 1024


@dataclass
class Resource:
    body: bytes
    use_etag: bool = True
    use_last_modified: bool = True
    ranges: bool = True
    fail_first: int = 0
    fail_status: int = 503
    retry_after: str | None = None
    drop_after: int | None = None
    drop_times: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 0
    rate: int | None = None
    content_disposition: str | None = None
    content_type: str = "application/octet-stream"
    redirect_to: str | None = None
    status: int = 200
    send_length: bool = True
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length
    fail_range_start: int | None = None  # requests whose Range starts here fail with fail_status...
    fail_range_times: int = 0  # ...this many times
    version: int = 1
    range_shift: int = 0  # a 206's Content-Range claims bytes this far off the ones sent
    basic_auth: tuple[str, str] | None = None  # (user, password) the origin wants
    cookie: str | None = None  # "name=value" the Cookie header must hold
    header: tuple[str, str] | None = None  # (name, value) the request must carry
    served: int = field(default=0, repr=False)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body + str(self.version).encode()).hexdigest()[:16] + '"'

    @property
    def last_modified(self) -> str:
        return formatdate(1_700_000_000 + self.version * 1000, usegmt=True)


@dataclass
class RequestLog:
    method: str
    path: str
    headers: dict[str, str]
    range: str | None
    status: int = 0
    body_bytes_sent: int = 0
    at: float = field(default_factory=time.monotonic)
    finished: bool = False  # the response is over: nothing more is sent for this request


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        entry = RequestLog(self.command, self.path, dict(self.headers), self.headers.get("Range"))
        try:
            self._respond(entry, head=head)
        finally:
            entry.finished = True

    def _respond(self, entry: RequestLog, *, head: bool) -> None:
        origin = self.server.origin
        with origin._lock:
            origin.requests.append(entry)
            resource = origin._resources.get(self.path)
            attempt = resource.served if resource else 0
            if resource:
                resource.served += 1
        if resource is None:
            return self._simple(entry, 404, b"not found")
        refusal = self._refuses_login(resource)
        if refusal:
            return self._simple(entry, refusal, b"log in first", {"WWW-Authenticate": 'Basic realm="origin"'})
        if self._fails_range(resource):
            extra = {"Retry-After": resource.retry_after} if resource.retry_after else {}
            return self._simple(entry, resource.fail_status, b"this range is unlucky", extra)
        if attempt < resource.fail_first:
            extra = {"Retry-After": resource.retry_after} if resource.retry_after else {}
            return self._simple(entry, resource.fail_status, b"try later", extra)
        if resource.redirect_to:
            return self._simple(entry, 302, b"", {"Location": resource.redirect_to})
        if resource.status != 200:
            return self._simple(entry, resource.status, b"no")
        if self._not_modified(resource):
            return self._simple(entry, 304, b"")
        body = resource.body
        start, end, status = 0, len(body), 200
        wanted = self.headers.get("Range") if resource.ranges else None
        if wanted and self._if_range_holds(resource):
            parsed = self._parse_range(wanted, len(body))
            if parsed is None:
                return self._simple(entry, 416, b"", {"Content-Range": f"bytes */{len(body)}"})
            start, end = parsed
            status = 206
        headers = {"Content-Type": resource.content_type}
        if resource.use_etag:
            headers["ETag"] = resource.etag
        if resource.use_last_modified:
            headers["Last-Modified"] = resource.last_modified
        if resource.ranges:
            headers["Accept-Ranges"] = "bytes"
        if resource.content_disposition:
            headers["Content-Disposition"] = resource.content_disposition
        if status == 206:
            headers["Content-Range"] = f"bytes {start + resource.range_shift}-{end - 1 + resource.range_shift}/{len(body)}"
        if resource.chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif resource.send_length:
            headers["Content-Length"] = str(end - start)
        else:
            headers["Connection"] = "close"
        entry.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        drop = resource.drop_after if resource.drop_times is None or attempt - resource.fail_first < resource.drop_times else None
        self._send_body(entry, resource, memoryview(body)[start:end], drop)
        if not resource.send_length:
            self.close_connection = True

    def _send_body(self, entry: RequestLog, resource: Resource, view: memoryview, drop: int | None) -> None:
        sent = 0
        stalled = False
        began = time.monotonic()
        try:
            while sent < len(view):
                limit = len(view) if drop is None else min(len(view), drop)
                if sent >= limit:
                    self._abort()
                    return
                if resource.stall_after is not None and not stalled and sent >= resource.stall_after:
                    stalled = True
                    time.sleep(resource.stall_seconds)
                step = min(_BLOCK, limit - sent)
                if resource.stall_after is not None and not stalled:
                    step = min(step, max(1, resource.stall_after - sent))
                if resource.chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (step, view[sent : sent + step]))
                else:
                    self.wfile.write(view[sent : sent + step])
                sent += step
                entry.body_bytes_sent = sent
                if resource.rate:
                    ahead = sent / resource.rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)
            if resource.chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True

    def _abort(self) -> None:
        """Hang up mid-body: the client sees the connection end before Content-Length."""
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _simple(self, entry: RequestLog, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        entry.status = status
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            entry.body_bytes_sent = len(body)

    def _refuses_login(self, resource: Resource) -> int:
        """401 or 403 if the request lacks the login `resource` wants, else 0."""
        if resource.basic_auth:
            wanted = "Basic " + base64.b64encode(":".join(resource.basic_auth).encode()).decode()
            if self.headers.get("Authorization") != wanted:
                return 401
        cookies = [part.strip() for part in self.headers.get("Cookie", "").split(";")]
        if resource.cookie and resource.cookie not in cookies:
            return 403
        if resource.header and self.headers.get(resource.header[0]) != resource.header[1]:
            return 403
        return 0

    def _fails_range(self, resource: Resource) -> bool:
        wanted = self.headers.get("Range", "")
        if resource.fail_range_start is None or not wanted.startswith(f"bytes={resource.fail_range_start}-"):
            return False
        with self.server.origin._lock:
            if resource.fail_range_times <= 0:
                return False
            resource.fail_range_times -= 1
            return True

    def _not_modified(self, resource: Resource) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return resource.use_etag and resource.etag in [tag.strip() for tag in if_none_match.split(",")]
        since = self.headers.get("If-Modified-Since")
        return since is not None and resource.use_last_modified and since == resource.last_modified

    def _if_range_holds(self, resource: Resource) -> bool:
        validator = self.headers.get("If-Range")
        if validator is None:
            return True
        if validator.startswith('"') or validator.startswith("W/"):
            return resource.use_etag and validator == resource.etag
        return resource.use_last_modified and validator == resource.last_modified

    @staticmethod
    def _parse_range(header: str, size: int) -> tuple[int, int] | None:
        unit, _, spec = header.partition("=")
        first, _, last = spec.partition("-")
        if unit.strip() != "bytes" or "," in spec or not first.isdigit():
            return None
        start = int(first)
        end = int(last) + 1 if last.isdigit() else size
        if start >= size or end <= start:
            return None
        return start, min(end, size)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up are part of the tests


class Origin:
    """The test origin; use as a context manager or call start()/stop()."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.origin = self
        self._lock = threading.Lock()
        self._resources: dict[str, Resource] = {}
        self.requests: list[RequestLog] = []
        self.base_url = f"http://{host}:{self._server.server_address[1]}"
        # serve_forever looks for shutdown() every poll_interval: 0.5 s by default, which every
        # test with an origin waited at its end.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def start(self) -> Origin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Origin:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def add(self, path: str, body: bytes = b"", **options) -> Resource:
        resource = Resource(body, **options)
        with self._lock:
            self._resources[path] = resource
        return resource

    def change(self, path: str, body: bytes) -> None:
        with self._lock:
            resource = self._resources[path]
            resource.body = body
            resource.version += 1

    def url(self, path: str) -> str:
        return self.base_url + path

    def bytes_sent(self, path: str) -> int:
        with self._lock:
            return sum(entry.body_bytes_sent for entry in self.requests if entry.path == path)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for entry in self.requests if entry.path == path)

    def sending(self, path: str) -> int:
        """Responses for `path` not yet over (a client that hung up ends its response at the next write)."""
        with self._lock:
            return sum(1 for entry in self.requests if entry.path == path and not entry.finished)
