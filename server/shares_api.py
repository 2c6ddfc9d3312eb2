"""`/api/v1/shares`: make, list and revoke the caller's share links.

`POST {"path", "expires_in"?, "password"?}` answers 201 `{"id", "url", "expires_at", ...}`;
`GET` lists the caller's own; `DELETE /api/v1/shares/<id>` revokes. A share of another
user is a 404 exactly like a missing one.
"""

from __future__ import annotations

import re
from typing import Any

from provider.accounts import AccountError, check_password
from provider.resources import SpaceFile, SpaceFolder
from provider.spaces import SpacesProvider
from server.api import ApiError, Request
from server.shares import MAX_EXPIRES_IN, TOKEN_PREFIX, Share, ShareError, ShareStore, normalise_path, owner_resource

SHARES_PATH = "/api/v1/shares"
_SHARE_PATH = re.compile(r"^/api/v1/shares/([A-Za-z0-9_-]{1,64})$")
_PRIVATE_FOLDER = ".fetchdrive"


def share_url(environ: dict, token: str) -> str:
    return f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', 'localhost')}{TOKEN_PREFIX}{token}"


class SharesApi:
    """The share routes of the API, called by `server.api.Api` for paths under /api/v1/shares."""

    def __init__(self, store: ShareStore, provider: SpacesProvider) -> None:
        self._store = store
        self._provider = provider

    def handles(self, path: str) -> bool:
        return path == SHARES_PATH or path.startswith(SHARES_PATH + "/")

    def route(self, request: Request) -> tuple[int, Any]:
        if request.path == SHARES_PATH:
            if request.method == "GET":
                return 200, [self.describe(share, request.environ) for share in self._store.for_owner(request.user)]
            if request.method == "POST":
                return self.create(request)
        else:
            match = _SHARE_PATH.match(request.path)
            if not match:
                raise ApiError(404, "no such share")
            if request.method == "DELETE":
                if not self._store.revoke(request.user, match.group(1)):
                    raise ApiError(404, "no such share")
                return 200, {"revoked": match.group(1)}
            if request.method == "GET":
                share = self._store.own(request.user, match.group(1))
                if share is None:
                    raise ApiError(404, "no such share")
                return 200, self.describe(share, request.environ)
        raise ApiError(405, f"{request.method} is not allowed on {request.path}")

    def describe(self, share: Share, environ: dict) -> dict[str, Any]:
        resource = owner_resource(self._provider, share.owner, share.path)
        return {
            "id": share.id, "url": share_url(environ, self._store.token(share)), "path": share.path,
            "is_folder": bool(resource and resource.is_collection), "exists": resource is not None,
            "created_at": share.created_at, "expires_at": share.expires_at,
            "expired": share.expired(), "has_password": share.password_hash is not None,
        }

    def create(self, request: Request) -> tuple[int, Any]:
        body = request.json()
        unknown = body.keys() - {"path", "expires_in", "password"}
        if unknown:
            raise ApiError(400, f"unknown field(s) {', '.join(sorted(unknown))}")
        raw_path = body.get("path")
        if not isinstance(raw_path, str):
            raise ApiError(400, 'give "path": the file or folder to share, e.g. "downloads/movie.mkv"')
        try:
            path = normalise_path(raw_path)
        except ShareError as error:
            raise ApiError(400, str(error)) from None
        if not path:
            raise ApiError(400, "share a file or a folder inside your drive, not the whole drive")
        if path.split("/")[0] == _PRIVATE_FOLDER:
            raise ApiError(400, f"{_PRIVATE_FOLDER}/ holds your private settings and cannot be shared")
        resource = owner_resource(self._provider, request.user, path)
        if resource is None or not isinstance(resource, (SpaceFile, SpaceFolder)):
            raise ApiError(404, f"{path} is not in your drive")
        expires_in = body.get("expires_in")
        if expires_in is not None and (isinstance(expires_in, bool) or not isinstance(expires_in, int)
                                       or not 1 <= expires_in <= MAX_EXPIRES_IN):
            raise ApiError(400, f'"expires_in" must be whole seconds between 1 and {MAX_EXPIRES_IN}')
        password = body.get("password")
        if password is not None:
            if not isinstance(password, str):
                raise ApiError(400, '"password" must be a string')
            try:
                check_password(password)
            except AccountError as error:
                raise ApiError(400, str(error)) from None
        try:
            share = self._store.create(request.user, path, expires_in=expires_in, password=password)
        except ShareError as error:
            raise ApiError(409, str(error)) from None
        return 201, self.describe(share, request.environ)
