"""The web page at `/`: one self-contained HTML file (no CDN), behind the same Basic login.

Its anti-framing and nosniff headers are added, as for every page, by `server.request_guard`.
"""

from __future__ import annotations

from http import HTTPStatus
from importlib.resources import files

from server.api import Api, ApiError

_PAGE = files("server").joinpath("static/index.html").read_bytes()


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
            ("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"),
        ])
        return [_PAGE]

    return app
