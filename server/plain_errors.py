"""WebDAV error answers as one line of plain text.

WsgiDAV answers errors with an HTML page that names its version; clients that are not
browsers print that page whole (rclone showed one three times for a 507). This keeps the
status and WsgiDAV's reason ("404 Not Found: /nothing.txt") and drops the rest. XML error
bodies (RFC 4918 preconditions) are left as they are.
"""

from __future__ import annotations

import html
import re

from server.wsgi_answer import started

_REASON = re.compile(rb"<p>(.*?)</p>", re.DOTALL)
_HEADING = re.compile(rb"<h1>(.*?)</h1>", re.DOTALL)


def plain_text(page: bytes, status: str) -> bytes:
    found = _REASON.search(page) or _HEADING.search(page)
    reason = html.unescape(found.group(1).decode("utf-8", "replace")).strip() if found else status
    return (" ".join(reason.split()) or status).encode() + b"\n"


def plain_errors(app):
    def middleware(environ, start_response):
        answer = started(app, environ)
        if answer.code < 400 or not answer.header("Content-Type").startswith("text/html"):
            start_response(answer.status, answer.headers)
            return answer.body()
        body = plain_text(answer.read_all(), answer.status)
        headers = [(key, value) for key, value in answer.headers if key.lower() not in ("content-type", "content-length")]
        start_response(answer.status, [*headers, ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    return middleware
