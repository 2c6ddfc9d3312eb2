"""Checks in front of WsgiDAV for requests it would answer badly.

- PROPFIND with `Depth: infinity` walks a whole tree: refused with 403 and RFC 4918's
  `propfind-finite-depth`; a missing Depth header means 1.
- A COPY/MOVE `Destination` on another host or outside /dav/ gets a 403 that says so
  (WsgiDAV answers 502, and a client error must not look like a server fault).
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlsplit

_FINITE_DEPTH = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n'
)


def _refuse(start_response, body: bytes, content_type: str = "text/plain; charset=utf-8"):
    start_response("403 Forbidden", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def destination_problem(environ: dict, prefix: str) -> str | None:
    """Why the Destination header is unacceptable, or None."""
    destination = environ.get("HTTP_DESTINATION")
    if destination is None:
        return None
    try:
        parts = urlsplit(destination)
    except ValueError:
        return "the Destination header is not a URL"
    if parts.netloc and parts.netloc.lower() != environ.get("HTTP_HOST", "").lower():
        return "the Destination must be on this server"
    path = posixpath.normpath(unquote(parts.path) or "/")
    if path != prefix and not path.startswith(prefix + "/"):
        return f"the Destination must be inside {prefix}/"
    return None


def dav_guard(app, prefix: str):
    def middleware(environ, start_response):
        method = environ.get("REQUEST_METHOD")
        if method == "PROPFIND":
            depth = environ.get("HTTP_DEPTH", "").strip().lower()
            if depth == "infinity":
                return _refuse(start_response, _FINITE_DEPTH, "application/xml; charset=utf-8")
            if not depth:
                environ["HTTP_DEPTH"] = "1"
        elif method in ("COPY", "MOVE"):
            problem = destination_problem(environ, prefix)
            if problem:
                return _refuse(start_response, f"{problem}.\n".encode())
        return app(environ, start_response)

    return middleware
