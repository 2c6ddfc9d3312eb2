"""User accounts: names, scrypt password hashes, quotas and the used-bytes counter.

Passwords are stored only as salted scrypt hashes. Because WebDAV clients send Basic
credentials with every request, a successful check is remembered (`credential_cache`), so
a hash costs its ~50 ms once per password change, not per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from engine.database import Database
from engine.schema import from_row
from provider.credential_cache import CredentialCache

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AccountError(ValueError):
    """A refused account operation; str(e) says what and how to fix it."""


@dataclass(frozen=True)
class User:
    name: str
    quota_bytes: int | None
    used_bytes: int
    created_at: float


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    encode = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def check_user_name(name: str) -> str:
    if not USER_NAME.match(name or ""):
        raise AccountError(
            f"invalid user name {name!r}: use 1-32 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < 8:
        raise AccountError("password too short: use at least 8 characters")
    if len(password) > 1024:
        raise AccountError("password too long: use at most 1024 characters")
    return password


class Accounts:
    """The `users` table and password checks."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._verified = CredentialCache(database.path.parent / "credentials.generation")
        self._unknown_user_hash = hash_password(secrets.token_urlsafe(16))

    def _row(self, name: str) -> dict | None:
        with self._database.read() as db:
            rows = list(db.query("select * from users where name = ?", [name]))
        return rows[0] if rows else None

    def get(self, name: str) -> User | None:
        row = self._row(name)
        if row is None:
            return None
        return from_row(User, row)

    def require(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise AccountError(f"no user named {name!r}; `fetchdrive user list` shows the users")
        return user

    def list(self) -> list[User]:
        with self._database.read() as db:
            rows = list(db.query("select * from users order by name"))
        return [from_row(User, row) for row in rows]

    def count(self) -> int:
        with self._database.read() as db:
            return db["users"].count

    def check_new_name(self, name: str) -> None:
        """Refuse an invalid or taken name (before any password is asked for or judged)."""
        check_user_name(name)
        if self._row(name) is not None:
            raise AccountError(f"user {name!r} already exists; use `fetchdrive user passwd {name}` to change its password")

    def add(self, name: str, password: str, quota_bytes: int | None) -> User:
        self.check_new_name(name)
        check_password(password)
        password_hash = hash_password(password)
        with self._database.write() as db:
            self.check_new_name(name)
            db["users"].insert(
                {
                    "name": name,
                    "password_hash": password_hash,
                    "quota_bytes": quota_bytes,
                    "used_bytes": 0,
                    "created_at": time.time(),
                }
            )
        return self.require(name)

    def remove(self, name: str) -> None:
        self.require(name)
        with self._database.write() as db:
            db.execute("delete from users where name = ?", [name])
        self._verified.changed()

    def set_password(self, name: str, password: str) -> None:
        self.require(name)
        check_password(password)
        with self._database.write() as db:
            db.execute("update users set password_hash = ? where name = ?", [hash_password(password), name])
        self._verified.changed()

    def set_quota(self, name: str, quota_bytes: int | None) -> None:
        self.require(name)
        with self._database.write() as db:
            db.execute("update users set quota_bytes = ? where name = ?", [quota_bytes, name])

    def add_used(self, name: str, delta: int) -> None:
        if delta:
            with self._database.write() as db:
                db.execute("update users set used_bytes = max(0, used_bytes + ?) where name = ?", [delta, name])

    def set_used(self, name: str, used_bytes: int) -> None:
        with self._database.write() as db:
            db.execute("update users set used_bytes = ? where name = ?", [used_bytes, name])

    def verify(self, name: str, password: str) -> bool:
        """True if `password` is `name`'s; constant-time, and cheap after the first success.

        An unknown name is checked against a hash of a random password, through the same
        single `password_matches` call a known name gets, so the answer takes as long.
        """
        if self._verified.known(name, password):
            return True
        generation = self._verified.generation()
        rows = self._database.read_committed("select password_hash from users where name = ?", [name]) \
            if USER_NAME.match(name or "") else []
        stored = rows[0][0] if rows else self._unknown_user_hash
        if not password_matches(password, stored) or not rows:
            return False
        self._verified.remember(name, password, generation)
        return True
