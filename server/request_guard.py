"""Checks every request before it is routed, and the headers every answer carries.

- A path that does not decode as UTF-8 (`/dav/%ff`) gets a 400: WsgiDAV would fail on it
  after answering had begun, and the client would see a dropped connection.
- Cross-site requests: a browser sends the user's cached Basic credentials with any request
  to this server, even one made by another site's page. A state-changing request (any method
  but GET, HEAD, OPTIONS and PROPFIND) whose `Origin`, or lacking that `Referer`, names
  another site is refused with 403. Clients that are not browsers send neither header, so
  they are not affected. A body sent to the API must be `application/json`, which another
  site's page cannot send without a CORS preflight that this server never grants (415).
- Pages must not be framed by other sites (clickjacking) and no answer may be sniffed into a
  type it was not sent as: every answer gets `X-Content-Type-Options: nosniff`, and every
  HTML answer, whichever part made it, `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`.
- An answer to HEAD carries no body, whichever part made it.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_NO_FRAMING = "frame-ancestors 'none'"
_log = logging.getLogger(__name__)


def _site(url_or_host: str, scheme: str) -> str | None:
    """`host:port` of an origin, a URL or a Host header, lower-case, default port dropped."""
    try:
        parts = urlsplit(url_or_host if "//" in url_or_host else f"{scheme}://{url_or_host}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    shown = f"[{host}]" if ":" in host else host
    if port is None or str(port) == _DEFAULT_PORTS.get(parts.scheme):
        return shown
    return f"{shown}:{port}"


def cross_site_problem(environ: dict) -> str | None:
    """Why a state-changing request from a browser page must be refused, or None."""
    if environ.get("REQUEST_METHOD", "GET") in SAFE_METHODS:
        return None
    header, value = "Origin", environ.get("HTTP_ORIGIN")
    if value is None:
        header, value = "Referer", environ.get("HTTP_REFERER")
    if value is None:
        return None
    scheme = environ.get("wsgi.url_scheme", "http")
    own = _site(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""), scheme)
    if own is None or _site(value.strip(), scheme) != own:
        return f"refused: the {header} header says this request comes from another site's page"
    return None


def api_body_problem(environ: dict) -> str | None:
    """Why the body of a state-changing API request is refused, or None (it must be JSON)."""
    if environ.get("REQUEST_METHOD", "GET") in SAFE_METHODS:
        return None
    has_body = environ.get("CONTENT_LENGTH", "") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ
    media_type = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json":
        return "the request body must be JSON, sent with Content-Type: application/json"
    return None


def path_problem(environ: dict) -> str | None:
    """Why the request path cannot be served, or None."""
    try:
        environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return "the path is not valid UTF-8"
    return None


def with_safe_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The answer's headers plus nosniff, and anti-framing for HTML."""
    names = {name.lower(): index for index, (name, _) in enumerate(headers)}
    headers = list(headers)
    if "x-content-type-options" not in names:
        headers.append(("X-Content-Type-Options", "nosniff"))
    content_type = headers[names["content-type"]][1] if "content-type" in names else ""
    if not content_type.lower().startswith("text/html"):
        return headers
    if "x-frame-options" not in names:
        headers.append(("X-Frame-Options", "DENY"))
    if "content-security-policy" not in names:
        headers.append(("Content-Security-Policy", _NO_FRAMING))
    elif "frame-ancestors" not in headers[names["content-security-policy"]][1]:
        name, policy = headers[names["content-security-policy"]]
        headers[names["content-security-policy"]] = (name, f"{policy.rstrip('; ')}; {_NO_FRAMING}")
    return headers


def _refuse(start_response, status: str, message: str, as_json: bool) -> list[bytes]:
    if as_json:
        body, content_type = json.dumps({"error": message}).encode(), "application/json"
    else:
        body, content_type = f"{message}.\n".encode(), "text/plain; charset=utf-8"
    start_response(status, with_safe_headers([("Content-Type", content_type), ("Content-Length", str(len(body)))]))
    return [body]


def request_guard(app, api_prefix: str):
    """WSGI middleware in front of the whole application (see the module docstring)."""

    def checked(environ, start_response):
        is_api = environ.get("PATH_INFO", "").startswith(api_prefix + "/")
        problem = path_problem(environ)
        if problem:
            return _refuse(start_response, "400 Bad Request", problem, is_api)
        problem = cross_site_problem(environ)
        if problem:
            _log.info("refused a cross-site %s %r from %s", environ.get("REQUEST_METHOD"),
                      environ.get("PATH_INFO", "")[:200], environ.get("REMOTE_ADDR", "?"))
            return _refuse(start_response, "403 Forbidden", problem, is_api)
        if is_api:
            problem = api_body_problem(environ)
            if problem:
                return _refuse(start_response, "415 Unsupported Media Type", problem, True)

        def start_safely(status, headers, exc_info=None):
            return start_response(status, with_safe_headers(headers), exc_info)

        return app(environ, start_safely)

    def middleware(environ, start_response):
        answer = checked(environ, start_response)
        if environ.get("REQUEST_METHOD") != "HEAD":
            return answer
        # cheroot sends whatever body an application returns, even to HEAD, and the client then
        # reads those bytes as the start of its next answer on the connection.
        try:
            for _ in answer:  # runs the application (a generator may start the response late)
                pass
        finally:
            if hasattr(answer, "close"):
                answer.close()
        return []

    return middleware
