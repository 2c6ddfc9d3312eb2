"""A fast path for the request a drive serves most: a plain GET or HEAD of a file.

WsgiDAV answers a GET through its directory browser, request resolver and request server,
building a resource object and asking it for each header. This middleware (placed after
authentication, like `fast_propfind`) opens the file, takes size, dates and ETag from the
one `fstat` of the open file (so a file replaced meanwhile is served whole, as the version
the headers describe), and answers with the headers WsgiDAV would send, in its order.

It applies to GET and HEAD of a regular file without a body, Range, conditional (`If-*`)
or `If` (lock token) header; anything else, folders and `downloads/` placeholders included,
goes to WsgiDAV as before. `tests/test_fast_get.py` compares the answers of both.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import TYPE_CHECKING

from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from provider.http_dates import rfc1123, rfc1123_now
from provider.mime_types import mime_type
from provider.resources import file_etag

if TYPE_CHECKING:
    from provider.spaces import SpacesProvider

# Headers after which WsgiDAV's answer depends on more than the file: WsgiDAV decides.
_GENERAL = ("HTTP_RANGE", "HTTP_IF", "HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
            "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE", "HTTP_TRANSFER_ENCODING")
WHOLE_BODY = 64 * 1024  # read in one go; larger bodies stream in the configured block size


def open_plain_file(provider: SpacesProvider, path: str, user: str | None) -> tuple[int, os.stat_result] | None:
    """The descriptor and `fstat` of `user`'s regular file at `path` (below the DAV root);
    None where WsgiDAV must decide (missing, a folder, a symlink, a placeholder, a refused
    path). Opened non-blocking, so that a FIFO cannot hold the thread."""
    try:
        file_path = provider._loc_to_file_path(path, {"wsgidav.auth.user_name": user})
        fd = os.open(file_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (DAVError, OSError):
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        os.close(fd)
        return None
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


def file_headers(info: os.stat_result, path: str, config: dict, length: int | None = None) -> list[tuple[str, str]]:
    """The headers of WsgiDAV's answer to a GET of the file (of `length` bytes of it), in its order."""
    return [
        ("Content-Length", str(info.st_size if length is None else length)),
        ("Last-Modified", rfc1123(info[stat.ST_MTIME])),
        ("Content-Type", mime_type(path, config)),
        ("Date", rfc1123_now()),
        ("ETag", f'"{file_etag(info)}"'),
        ("Accept-Ranges", "bytes"),
    ]


class FastGet(BaseMiddleware):
    """Answers plain GET/HEAD of files itself; passes everything else on."""

    def __init__(self, wsgidav_app, next_app, config) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.provider: SpacesProvider = config["fetchdrive"]["provider"]
        self.enabled: bool = config["fetchdrive"]["fast_get"]
        self.block_size: int = config["block_size"]

    def __call__(self, environ: dict, start_response):
        method = environ["REQUEST_METHOD"]
        if not (self.enabled and method in ("GET", "HEAD")) or not self._plain(environ):
            return self.next_app(environ, start_response)
        path = environ["PATH_INFO"]
        opened = open_plain_file(self.provider, path, environ.get("wsgidav.auth.user_name"))
        if opened is None:
            return self.next_app(environ, start_response)
        fd, info = opened
        try:
            start_response("200 OK", file_headers(info, path, environ["wsgidav.config"]))
            if method == "HEAD":
                os.close(fd)
                return [b""]
            if info.st_size <= WHOLE_BODY:
                body = os.read(fd, info.st_size)
                os.close(fd)
                return [body]
        except BaseException:
            os.close(fd)
            raise
        return self._stream(fd, info.st_size)

    def _plain(self, environ: dict) -> bool:
        return (environ.get("wsgidav.provider") is self.provider
                and environ.get("CONTENT_LENGTH", "") in ("", "0")
                and environ.get("HTTP_DEPTH", "0") == "0"
                and not environ["PATH_INFO"].endswith("/")
                and not any(header in environ for header in _GENERAL))

    def _stream(self, fd: int, size: int) -> Iterator[bytes]:
        """The first `size` bytes (what Content-Length promised, however the file grows)."""
        with os.fdopen(fd, "rb", buffering=0) as content:
            while size > 0 and (block := content.read(min(size, self.block_size))):
                size -= len(block)
                yield block
