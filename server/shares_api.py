"""`/api/v1/shares`: make, list and revoke the caller's share links.

`POST {"path", "expires_in"?, "password"?}` answers 201 `{"id", "url", "expires_at", ...}`;
`GET` lists the caller's own; `DELETE /api/v1/shares/<id>` revokes. A share of another
user is a 404 exactly like a missing one. The routes parse and render; what may be shared
is decided by server/share_service.py.
"""

from __future__ import annotations

import re
from typing import Any

from server.api import ApiError, Request
from server.share_service import ShareService
from server.shares import MAX_EXPIRES_IN, Share

SHARES_PATH = "/api/v1/shares"
_SHARE_PATH = re.compile(r"^/api/v1/shares/([A-Za-z0-9_-]{1,64})$")


def _site(environ: dict) -> str:
    return f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}"


class SharesApi:
    """The share routes of the API, called by `server.api.Api` for paths under /api/v1/shares."""

    def __init__(self, shares: ShareService) -> None:
        self._shares = shares

    def handles(self, path: str) -> bool:
        return path == SHARES_PATH or path.startswith(SHARES_PATH + "/")

    def route(self, request: Request) -> tuple[int, Any]:
        site = _site(request.environ)
        if request.path == SHARES_PATH:
            if request.method == "GET":
                return 200, [self._shares.describe(share, site) for share in self._shares.list(request.user)]
            if request.method == "POST":
                return 201, self._shares.describe(self.create(request), site)
        else:
            match = _SHARE_PATH.match(request.path)
            if not match:
                raise ApiError(404, "no such share")
            if request.method == "DELETE":
                self._shares.revoke(request.user, match.group(1))
                return 200, {"revoked": match.group(1)}
            if request.method == "GET":
                return 200, self._shares.describe(self._shares.own(request.user, match.group(1)), site)
        raise ApiError(405, f"{request.method} is not allowed on {request.path}")

    def create(self, request: Request) -> Share:
        body = request.json()
        unknown = body.keys() - {"path", "expires_in", "password"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}")
        path, expires_in, password = body.get("path"), body.get("expires_in"), body.get("password")
        if not isinstance(path, str):
            raise ApiError(400, 'give "path": the file or folder to share, e.g. "downloads/movie.mkv"')
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, int)):
            raise ApiError(400, f'"expires_in" must be whole seconds between 1 and {MAX_EXPIRES_IN}')
        if password is not None and not isinstance(password, str):
            raise ApiError(400, '"password" must be a string')
        return self._shares.create(request.user, path, expires_in=expires_in, password=password)
