"""Answers a plain GET or HEAD of a file in the drive as soon as cheroot has read its head.

The request a drive serves most is a logged-in client reading one of its files. Through the
whole application it passes nine layers (cheroot's WSGI gateway and environ, `request_guard`,
the routing, `sandboxed_files`, `dav_guard`, `plain_errors`, WsgiDAV's app, error printer and
authenticator) before `provider.fast_get` answers it, and each layer costs a call, a wrapped
`start_response` and a look through the headers. `FastFiles` answers it from cheroot's own
request object, with the headers all those layers give, in their order, and sends large
bodies with `sendfile`; a single satisfiable `Range` gets its 206, as WsgiDAV parses it, and
conditions (`If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`) are
weighed by WsgiDAV's own `evaluate_http_conditionals`.

It answers only what it can answer exactly as the full stack does: GET or HEAD under the DAV
root, without a query, body, `If` (lock tokens), `If-Range`, `Depth` or `Expect` header,
whose conditions hold (a 304 or 412 comes from WsgiDAV, as do several or unsatisfiable
ranges), of a path
that is already canonical UTF-8, with Basic credentials verified before (the credential
cache) for a login that is not throttled, naming a regular file (`open_plain_file`: no
symlink, placeholder or refused path). Anything else returns False and goes through the
full stack as before. `tests/test_fast_get.py` compares the answers with `server.fast_get`
on and off.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cheroot.server import HTTPRequest
from wsgidav.dav_error import DAVError
from wsgidav.util import evaluate_http_conditionals, obtain_content_ranges

from provider.domain import Authenticator, LoginRefused, basic_credentials
from provider.fast_get import WHOLE_BODY, file_headers, open_plain_file
from provider.resources import file_etag
from server.page_headers import FILE_CSP
from server.request_guard import with_safe_headers

if TYPE_CHECKING:
    from provider.spaces import SpacesProvider

# Request headers after which the answer depends on more than the file (or on a body).
_GENERAL = frozenset({b"If", b"If-Range", b"Transfer-Encoding", b"Expect", b"Depth"})
# The conditions on the file's ETag and date, under their WSGI names.
_CONDITIONS = {b"If-Match": "HTTP_IF_MATCH", b"If-None-Match": "HTTP_IF_NONE_MATCH",
               b"If-Modified-Since": "HTTP_IF_MODIFIED_SINCE", b"If-Unmodified-Since": "HTTP_IF_UNMODIFIED_SINCE"}


class FastFiles:
    """The early answer to plain GET/HEAD of drive files (see the module docstring)."""

    def __init__(self, provider: SpacesProvider, authenticator: Authenticator, dav_config: dict, prefix: str) -> None:
        self._provider = provider
        self._authenticator = authenticator
        self._dav_config = dav_config
        self._prefix = prefix.encode() + b"/"

    def answered(self, req: HTTPRequest) -> bool:
        """Answer `req` and return True, or return False (nothing sent) for the full stack."""
        if req.method not in (b"GET", b"HEAD") or req.qs or not self._plain_headers(req.inheaders):
            return False
        path = self._dav_path(req.path)
        user = self._user(req)
        if path is None or user is None:
            return False
        opened = open_plain_file(self._provider, path, user)
        if opened is None:
            return False
        fd, info = opened
        try:
            range_header = req.inheaders.get(b"Range")
            span = _span(range_header, info.st_size)
            if span is None or not _conditions_hold(req, info):
                return False
            start, length = span
            headers = file_headers(info, path, self._dav_config, length)
            if range_header is not None and info.st_size:
                headers.append(("Content-Range", f"bytes {start}-{start + length - 1}/{info.st_size}"))
                req.status = b"206 Partial Content"
            else:
                req.status = b"200 OK"
            headers += [("Content-Security-Policy", FILE_CSP), ("X-Content-Type-Options", "nosniff")]
            headers = with_safe_headers(headers)
            req.outheaders = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
            req.sent_headers = True
            req.send_headers()
            if req.method == b"GET" and length:
                self._send_body(req, fd, start, length)
        finally:
            os.close(fd)
        return True

    @staticmethod
    def _plain_headers(headers: dict[bytes, bytes]) -> bool:
        return headers.get(b"Content-Length", b"0") == b"0" and _GENERAL.isdisjoint(headers)

    def _dav_path(self, raw: bytes) -> str | None:
        """The path below the DAV root, where WsgiDAV would see the same one unchanged."""
        if not raw.startswith(self._prefix) or raw.endswith(b"/") or b"%" in raw:
            return None  # `%2F` is the one escape cheroot leaves in the path
        try:
            path = raw[len(self._prefix) - 1:].decode("utf-8")
        except UnicodeDecodeError:
            return None
        if any(part in ("", ".", "..") or "\0" in part for part in path[1:].split("/")):
            return None
        return path

    def _user(self, req: HTTPRequest) -> str | None:
        header = req.inheaders.get(b"Authorization")
        if header is None:
            return None
        try:
            user, password = basic_credentials(header.decode("latin-1"))
        except LoginRefused:
            return None
        address = req.conn.remote_addr or ""  # as in the WSGI environ
        return user if self._authenticator.check_remembered(user, password, address) else None

    @staticmethod
    def _send_body(req: HTTPRequest, fd: int, start: int, length: int) -> None:
        """`length` bytes from `start`, as Content-Length promised; small bodies leave with
        the head in one send, larger ones through `sendfile`."""
        if length <= WHOLE_BODY:
            body = os.pread(fd, length, start)
            req.write(body)
            sent = len(body)
        else:
            req.conn.wfile.flush()
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as content:
                sent = req.conn.socket.sendfile(content, start, length)
        if sent < length:  # the file shrank meanwhile: the client must not wait for the rest
            req.close_connection = True


class _Validated:
    """What `evaluate_http_conditionals` asks of a resource: a file has an ETag and a date."""

    @staticmethod
    def support_etag() -> bool:
        return True

    @staticmethod
    def support_modified() -> bool:
        return True


def _conditions_hold(req: HTTPRequest, info: os.stat_result) -> bool:
    """True unless the request's `If-*` conditions make WsgiDAV answer 304 or 412."""
    environ = {name: req.inheaders[header].decode("latin-1") for header, name in _CONDITIONS.items()
               if header in req.inheaders}
    if not environ:
        return True
    environ["REQUEST_METHOD"] = req.method.decode("ascii")
    try:
        evaluate_http_conditionals(_Validated(), int(info.st_mtime), file_etag(info), environ)
    except DAVError:
        return False
    return True


def _span(range_header: bytes | None, size: int) -> tuple[int, int] | None:
    """(start, length) to send: the whole file, or the one range asked for, as WsgiDAV
    reads `Range`; None where WsgiDAV must answer (several ranges, none satisfiable)."""
    if range_header is None or size == 0:  # WsgiDAV ignores ranges of an empty file
        return 0, size
    try:
        ranges, _ = obtain_content_ranges(range_header.decode("latin-1"), size)
    except DAVError:
        return None
    if len(ranges) != 1:
        return None
    start, _, length = ranges[0]
    return start, length
