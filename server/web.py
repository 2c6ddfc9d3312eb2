"""The web page at `/` (dashboard and file browser, one self-contained HTML file, no CDN),
behind the same Basic login, and its style sheet under /static/ (public: share pages use it).

Its anti-framing and nosniff headers are added, as for every page, by `server.request_guard`.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib.resources import files

from server.api import Api, ApiError
from server.page_headers import page_headers

STATIC_PREFIX = "/static/"
_STATIC = files("server").joinpath("static")
_PAGE = _STATIC.joinpath("index.html").read_bytes()
_ASSETS = {"drive.css": (_STATIC.joinpath("drive.css").read_bytes(), "text/css; charset=utf-8")}


def web_page(api: Api):
    """A WSGI app serving the dashboard to authenticated users."""

    def app(environ, start_response):
        try:
            api.authenticate(environ)
        except ApiError as error:
            body = f"{error}\n".encode()
            start_response(f"{error.status} {HTTPStatus(error.status).phrase}", [
                *error.headers,
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
            ])
            return [body]
        start_response("200 OK", [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(_PAGE))),
            ("Cache-Control", "no-store"),
            *page_headers(),
        ])
        return [_PAGE]

    return app


def static_files(environ, start_response):
    """The page's assets; anything else under /static/ is a 404."""
    asset = _ASSETS.get(environ.get("PATH_INFO", "")[len(STATIC_PREFIX):])
    if asset is None:
        body = b"Not found.\n"
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
    body, content_type = asset
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body))),
                              ("Cache-Control", "public, max-age=300"), ("X-Content-Type-Options", "nosniff")])
    return [body]
