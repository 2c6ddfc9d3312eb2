"""Share links: the `shares` table and the tokens that open them.

A share names one file or folder of its owner's space. Its public token is derived, never
stored: `token = HMAC-SHA256(server key, share id)`, where the share id carries 128 random
bits and the key (256 random bits) lives in `storage.root/share.key`, outside the database.
The table keeps only the token's SHA-256 for look-ups, so a leaked database opens no link,
while the owner's list can still show each link again. Passwords are salted scrypt hashes,
as for accounts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from wsgidav.dav_error import DAVError

from engine.database import Database
from provider.accounts import hash_password
from provider.spaces import SpacesProvider
from server.settings import ConfigError
from server.shares_table import Share, ShareRepository, SqliteShares

TOKEN_PREFIX = "/s/"
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600
MAX_SHARES_PER_USER = 10_000


class ShareError(ValueError):
    """A refused share operation; str(e) says why."""


def _server_key(path: Path) -> bytes:
    """The key file, made once. Written whole under a temporary name and linked into place,
    so nodes sharing storage.root that start together agree on one complete key."""
    if not path.exists():
        temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_bytes(32))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another node was first: its key is the one
        finally:
            temp.unlink()
    key = path.read_bytes()
    if len(key) < 32:
        raise ConfigError(f"{path} is damaged (fewer than 32 bytes); remove it, which revokes every share link")
    return key


def normalise_path(path: str) -> str:
    """`path` as `a/b/c`: no leading or trailing slash, no `.`/`..`, no empty segments."""
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") or "\0" in part for part in parts):
        raise ShareError(f"path {path!r} must not contain '.' or '..' segments")
    return "/".join(parts)


def owner_resource(provider: SpacesProvider, owner: str, path: str):
    """The file or folder at `path` ("a/b") in `owner`'s space, looked up as the drive does
    (no `..`, no symlinks), or None."""
    environ = {"wsgidav.auth.user_name": owner, "wsgidav.provider": provider, "REQUEST_METHOD": "PROPFIND"}
    try:
        return provider.get_resource_inst("/" + path.strip("/"), environ)
    except DAVError:
        return None


class ShareStore:
    """Share links: tokens, passwords and the per-user cap, over the `shares` table."""

    def __init__(self, database: Database, key_file: Path) -> None:
        self._shares: ShareRepository = SqliteShares(database)
        self._key = _server_key(key_file)

    def token(self, share: Share) -> str:
        mac = hmac.new(self._key, share.id.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    @staticmethod
    def _token_hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def create(self, owner: str, path: str, *, expires_in: int | None, password: str | None) -> Share:
        now = time.time()
        share = Share(
            id=secrets.token_urlsafe(16), owner=owner, path=path, created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
            password_hash=hash_password(password) if password is not None else None,
        )
        if not self._shares.insert(share, self._token_hash(self.token(share)), at_most=MAX_SHARES_PER_USER):
            raise ShareError(f"you have {MAX_SHARES_PER_USER} share links; revoke some before making more")
        return share

    def for_owner(self, owner: str) -> list[Share]:
        return self._shares.for_owner(owner)

    def own(self, owner: str, share_id: str) -> Share | None:
        """The share if `owner` owns it; another user's share is as absent as a missing one."""
        return self._shares.own(owner, share_id)

    def by_token(self, token: str) -> Share | None:
        """The live share the token opens, or None (unknown, revoked or expired)."""
        found = self._shares.by_token_sha256(self._token_hash(token))
        if found is None or found.expired() or not hmac.compare_digest(self.token(found), token):
            return None
        return found

    def revoke(self, owner: str, share_id: str) -> bool:
        return self._shares.delete(owner, share_id)

    def remove_owner(self, owner: str) -> None:
        self._shares.delete_owner(owner)
