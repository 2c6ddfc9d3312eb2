"""What anyone with a share link sees at `/s/<token>[/...]`: no login, read-only.

A file share serves the file through WsgiDAV's own GET (so Range, If-Range and ETags work as
on the drive), as the owner but with a request built here: GET or HEAD, the path inside the
share, the Range headers and nothing else from the visitor. A folder share shows a listing
page styled like the dashboard and serves what is below it. Paths are resolved by the
drive's provider, which refuses `..`, NUL and symlinks on the way; every other answer is the
same 404, which names neither the owner nor any path.
"""

from __future__ import annotations

import base64
import binascii
import html
import time
from typing import Callable, Iterable
from urllib.parse import quote

from wsgidav.util import re_encode_wsgi

from provider.login_throttle import LoginThrottle
from provider.resources import SpaceFile, SpaceFolder
from provider.spaces import SpacesProvider
from server.page_headers import FILE_CSP, page_headers
from server.shares import TOKEN_PREFIX, Share, ShareStore, owner_resource
from server.sizes import format_size
from server.wsgi_answer import started

# Not an HTTP_* key, so no client can set it: WsgiDAV's trusted_auth_header (see app.py).
SHARE_OWNER_KEY = "fetchdrive.share_owner"
_FORWARDED = ("HTTP_RANGE", "HTTP_IF_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH",
              "HTTP_IF_UNMODIFIED_SINCE", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
              "REMOTE_ADDR", "wsgi.input", "wsgi.errors", "wsgi.version", "wsgi.url_scheme", "wsgi.multithread",
              "wsgi.multiprocess", "wsgi.run_once", "wsgi.file_wrapper")
_PASSED_STATUSES = {200, 206, 304, 412, 416}
_NOT_FOUND = "This link does not exist, has expired or was revoked.\n"


def _plain(start_response, status: str, text: str, extra: list[tuple[str, str]] = ()) -> list[bytes]:
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *page_headers(), *extra])
    return [body]


def _basic_password(environ: dict) -> str | None:
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        return None


def content_disposition(name: str, *, download: bool) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"{'attachment' if download else 'inline'}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class SharePages:
    """The WSGI app for `/s/`."""

    def __init__(self, store: ShareStore, provider: SpacesProvider, user_exists: Callable[[str], bool], dav_app,
                 throttle: LoginThrottle) -> None:
        self._store = store
        self._provider = provider
        self._user_exists = user_exists
        self._dav_app = dav_app
        self._throttle = throttle

    def __call__(self, environ, start_response):
        try:
            # PEP 3333 hands the path over as Latin-1; clients send UTF-8 (as WsgiDAV assumes).
            request_path = re_encode_wsgi(environ.get("PATH_INFO", ""))
        except UnicodeDecodeError:
            return _plain(start_response, "404 Not Found", _NOT_FOUND)
        token, below, rest = request_path[len(TOKEN_PREFIX):].partition("/")
        share = self._store.by_token(token) if token else None
        if share is None or not self._user_exists(share.owner):
            return _plain(start_response, "404 Not Found", _NOT_FOUND)
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "A shared link can only be read.\n",
                          [("Allow", "GET, HEAD")])
        if share.password_hash is not None and not self._password_ok(share, environ):
            return _plain(start_response, "401 Unauthorized", "This link needs its password (any user name).\n",
                          [("WWW-Authenticate", 'Basic realm="shared link", charset="UTF-8"')])
        parts = [part for part in rest.split("/") if part]
        if any(part in (".", "..") or "\0" in part for part in parts):
            return _plain(start_response, "404 Not Found", _NOT_FOUND)
        path = "/" + "/".join([share.path, *parts])
        shared = owner_resource(self._provider, share.owner, share.path)
        resource = owner_resource(self._provider, share.owner, path) if parts else shared
        if resource is None or (below and not shared.is_collection):
            return _plain(start_response, "404 Not Found", _NOT_FOUND)
        if resource.is_collection:
            if not request_path.endswith("/"):
                location = quote(request_path) + "/"
                return _plain(start_response, "301 Moved Permanently", "See the folder's page.\n", [("Location", location)])
            return self._listing(start_response, share, parts, resource, head=method == "HEAD")
        download = "download" in environ.get("QUERY_STRING", "")
        return self._serve_file(environ, start_response, share, path, download=download)

    def _password_ok(self, share: Share, environ: dict) -> bool:
        password = _basic_password(environ)
        key, address = f"share:{share.id}", environ.get("REMOTE_ADDR", "?")
        if password is None or self._throttle.locked_for(key, address) > 0:
            return False
        if share.password_accepted(password):
            self._throttle.succeeded(key, address)
            return True
        self._throttle.failed(key, address)
        return False

    def _serve_file(self, environ, start_response, share: Share, path: str, *, download: bool) -> Iterable[bytes]:
        inner = {key: environ[key] for key in _FORWARDED if key in environ}
        inner.update({"REQUEST_METHOD": environ["REQUEST_METHOD"], "SCRIPT_NAME": "", "PATH_INFO": ("/dav" + path).encode().decode("iso-8859-1"),
                      "QUERY_STRING": "", "CONTENT_LENGTH": "0", SHARE_OWNER_KEY: share.owner})
        answer = started(self._dav_app, inner)
        if answer.code not in _PASSED_STATUSES:
            answer.close()
            return _plain(start_response, "404 Not Found", _NOT_FOUND)
        name = path.rsplit("/", 1)[-1]
        start_response(answer.status, [*answer.headers, ("Content-Disposition", content_disposition(name, download=download)),
                                       ("Cache-Control", "private, no-cache"), *page_headers(FILE_CSP)])
        return answer.body()

    def _listing(self, start_response, share: Share, parts: list[str], folder, *, head: bool) -> list[bytes]:
        body = render_listing(share, parts, folder.get_member_list()).encode()
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "private, no-cache"), *page_headers()])
        return [] if head else [body]


def render_listing(share: Share, parts: list[str], members) -> str:
    """The read-only listing of a shared folder: names relative to the share, nothing more."""
    title = share.path.rsplit("/", 1)[-1]
    crumbs = [(title, "../" * len(parts) or "./")]
    crumbs += [(part, "../" * (len(parts) - i - 1) or "./") for i, part in enumerate(parts)]
    breadcrumb = " / ".join(f'<a href="{html.escape(href)}">{html.escape(name)}</a>' for name, href in crumbs)
    rows = []
    files = [m for m in members if isinstance(m, (SpaceFile, SpaceFolder))]
    for member in sorted(files, key=lambda m: (not m.is_collection, m.name.lower())):
        href = quote(member.name) + ("/" if member.is_collection else "")
        modified = member.get_last_modified()
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(modified)) if modified else ""
        if member.is_collection:
            size, download = "folder", ""
        else:
            size = format_size(member.get_content_length())
            download = f' <a class="muted" href="{html.escape(href)}?download" download>download</a>'
        rows.append(f'<tr><td><a href="{html.escape(href)}">{html.escape(member.name)}{"/" if member.is_collection else ""}</a>'
                    f'{download}</td><td class="num">{size}</td><td class="num">{when} UTC</td></tr>')
    empty = '<tr><td colspan="3" class="muted">This folder is empty.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - shared with fetchdrive</title><link rel="stylesheet" href="/static/drive.css"></head>
<body><header><h1>fetchdrive</h1><span class="muted">shared folder, read-only</span></header>
<main><nav class="crumbs" aria-label="Folders">{breadcrumb}</nav>
<table class="files"><thead><tr><th>Name</th><th class="num">Size</th><th class="num">Modified</th></tr></thead>
<tbody>{''.join(rows) or empty}</tbody></table></main></body></html>
"""
