"""A user's share links as the API and the web page ask for them: make, list, show, revoke.

What may be shared is decided here: a file or folder that exists in the owner's space, never
the whole space nor the private `.fetchdrive/` folder. Another user's share is not found,
exactly like a missing one.
"""

from __future__ import annotations

from typing import Any

from provider.accounts import AccountError, check_password
from provider.resources import SpaceFile, SpaceFolder
from provider.spaces import SpacesProvider
from server.service_errors import Conflict, Invalid, NotFound
from server.shares import MAX_EXPIRES_IN, TOKEN_PREFIX, Share, ShareError, ShareStore, normalise_path, owner_resource

_PRIVATE_FOLDER = ".fetchdrive"


class ShareService:
    """Share links of each user, on top of the share store and the user's space."""

    def __init__(self, store: ShareStore, provider: SpacesProvider) -> None:
        self._store = store
        self._provider = provider

    def create(self, owner: str, path: str, *, expires_in: int | None, password: str | None) -> Share:
        try:
            path = normalise_path(path)
        except ShareError as error:
            raise Invalid(str(error)) from None
        if not path:
            raise Invalid("share a file or a folder inside your drive, not the whole drive")
        if path.split("/")[0] == _PRIVATE_FOLDER:
            raise Invalid(f"{_PRIVATE_FOLDER}/ holds your private settings and cannot be shared")
        resource = owner_resource(self._provider, owner, path)
        if resource is None or not isinstance(resource, (SpaceFile, SpaceFolder)):
            raise NotFound(f"{path} is not in your drive")
        if expires_in is not None and not 1 <= expires_in <= MAX_EXPIRES_IN:
            raise Invalid(f'"expires_in" must be whole seconds between 1 and {MAX_EXPIRES_IN}')
        if password is not None:
            try:
                check_password(password)
            except AccountError as error:
                raise Invalid(str(error)) from None
        try:
            return self._store.create(owner, path, expires_in=expires_in, password=password)
        except ShareError as error:
            raise Conflict(str(error)) from None

    def list(self, owner: str) -> list[Share]:
        return self._store.for_owner(owner)

    def own(self, owner: str, share_id: str) -> Share:
        share = self._store.own(owner, share_id)
        if share is None:
            raise NotFound("no such share")
        return share

    def revoke(self, owner: str, share_id: str) -> None:
        if not self._store.revoke(owner, share_id):
            raise NotFound("no such share")

    def describe(self, share: Share, site: str) -> dict[str, Any]:
        """The share as its owner sees it; `site` is the scheme and host the link starts with."""
        resource = owner_resource(self._provider, share.owner, share.path)
        return {
            "id": share.id, "url": f"{site}{TOKEN_PREFIX}{self._store.token(share)}", "path": share.path,
            "is_folder": bool(resource and resource.is_collection), "exists": resource is not None,
            "created_at": share.created_at, "expires_at": share.expires_at,
            "expired": share.expired(), "has_password": share.password_hash is not None,
        }
