"""Checks in front of WsgiDAV for requests it would answer badly.

- PROPFIND with `Depth: infinity` walks a whole tree: refused with 403 and RFC 4918's
  `propfind-finite-depth`; a missing Depth header means 1.
- A COPY/MOVE `Destination` on another host or outside /dav/ gets a 403 that says so
  (WsgiDAV answers 502, and a client error must not look like a server fault); so does a
  COPY/MOVE of the space's root, or onto it (WsgiDAV fails with a 500 looking for its parent).
- XML request bodies (PROPFIND, PROPPATCH, LOCK...) are capped at 1 MiB, and any DTD is
  refused: WebDAV never needs one, and entities are how XML bombs and XXE get in.
- GET and HEAD with a body get 415 (WsgiDAV's own refusal of that, for folders, is a 500).
- A path with a `.` or `..` segment (sent escaped, as `%2E%2E`, it reaches WsgiDAV unresolved)
  gets 400: no name in a space is `.` or `..`, and WsgiDAV fails with a 500 looking for the
  parent of one.
"""

from __future__ import annotations

import posixpath
import io
import re
from urllib.parse import unquote, urlsplit

_FINITE_DEPTH = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:error xmlns:D="DAV:"><D:propfind-finite-depth/></D:error>\n'
)


XML_METHODS = {"PROPFIND", "PROPPATCH", "LOCK", "UNLOCK", "MKCOL", "REPORT", "SEARCH", "COPY", "MOVE"}
MAX_XML_BODY = 1024 * 1024
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_DOT_SEGMENTS = frozenset({".", ".."})


def _refuse(start_response, body: bytes, content_type: str = "text/plain; charset=utf-8", status: str = "403 Forbidden"):
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def xml_body_problem(environ: dict) -> tuple[str, str] | None:
    """(status, reason) if the XML body must be refused; else the body is buffered for WsgiDAV."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return "400 Bad Request", "Content-Length is not a number"
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked:
        body = environ["wsgi.input"].read(MAX_XML_BODY + 1)
        length = len(body)
        environ.pop("HTTP_TRANSFER_ENCODING")
        environ["CONTENT_LENGTH"] = str(length)
    if length > MAX_XML_BODY:
        return "413 Payload Too Large", f"XML request bodies are limited to {MAX_XML_BODY} bytes"
    if not chunked:
        body = environ["wsgi.input"].read(length) if length > 0 else b""
    if _DTD.search(body):
        return "400 Bad Request", "XML with a DTD or entities is not accepted"
    environ["wsgi.input"] = io.BytesIO(body)
    return None


def _has_body(environ: dict) -> bool:
    return environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ


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
    try:
        path = posixpath.normpath(unquote(parts.path, errors="strict") or "/")
    except UnicodeDecodeError:
        return "the Destination path is not valid UTF-8"
    if path != prefix and not path.startswith(prefix + "/"):
        return f"the Destination must be inside {prefix}/"
    if path == prefix:
        return "the root of your space cannot be replaced"
    return None


def _is_root(path: str, prefix: str) -> bool:
    return posixpath.normpath(path) == prefix


def dav_guard(app, prefix: str):
    def middleware(environ, start_response):
        method = environ.get("REQUEST_METHOD")
        dots = _DOT_SEGMENTS.intersection(environ.get("PATH_INFO", "").split("/"))
        if dots:
            return _refuse(start_response, f"a path segment {min(dots)!r} is not allowed.\n".encode(),
                           status="400 Bad Request")
        if method == "PROPFIND":
            depth = environ.get("HTTP_DEPTH", "").strip().lower()
            if depth == "infinity":
                return _refuse(start_response, _FINITE_DEPTH, "application/xml; charset=utf-8")
            if not depth:
                environ["HTTP_DEPTH"] = "1"
        if method in ("COPY", "MOVE"):
            problem = (f"the root of your space cannot be {'copied' if method == 'COPY' else 'moved'}"
                       if _is_root(environ["PATH_INFO"], prefix) else destination_problem(environ, prefix))
            if problem:
                return _refuse(start_response, f"{problem}.\n".encode())
        if method in ("GET", "HEAD") and _has_body(environ):
            # WsgiDAV means to refuse this for folders, but fails with a 500 doing so.
            return _refuse(start_response, f"a {method} request takes no body.\n".encode(),
                           status="415 Unsupported Media Type")
        if method in XML_METHODS:
            refused = xml_body_problem(environ)
            if refused:
                return _refuse(start_response, f"{refused[1]}.\n".encode(), status=refused[0])
        return app(environ, start_response)

    return middleware
