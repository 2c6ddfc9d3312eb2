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
from pathlib import Path

from engine.database import Database
from provider.credential_cache import CredentialCache, DatabaseGeneration
from provider.users_table import SqliteUsers, User, UserRepository

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class AccountError(ValueError):
    """A refused account operation; str(e) says what and how to fix it."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    return _stored_hash(salt, hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P))


def _stored_hash(salt: bytes, digest: bytes) -> str:
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


def _taken(name: str) -> AccountError:
    return AccountError(f"user {name!r} already exists; use `fetchdrive user passwd {name}` to change its password")


def check_password(password: str) -> str:
    if len(password) < 8:
        raise AccountError("password too short: use at least 8 characters")
    if len(password) > 1024:
        raise AccountError("password too long: use at most 1024 characters")
    return password


class Accounts:
    """The rules for accounts and password checks, over the `users` table (`UserRepository`)."""

    def __init__(self, database: Database, root: Path) -> None:
        """`root`: the data folder, where processes sharing it mark password changes."""
        self._users: UserRepository = SqliteUsers(database)
        shared = DatabaseGeneration(database) if database.dialect == "postgresql" else None
        self._verified = CredentialCache(root / "credentials.generation", shared)
        # What an unknown name is checked against. Its digest is random bytes of a real digest's
        # length: checking a password against it costs the scrypt a stored hash costs, while
        # making it costs none (an scrypt here took 50 to 250 ms of every start and command).
        self._unknown_user_hash = _stored_hash(secrets.token_bytes(16), secrets.token_bytes(64))

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def require(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise AccountError(f"no user named {name!r}; `fetchdrive user list` shows the users")
        return user

    def list(self) -> list[User]:
        return self._users.list()

    def count(self) -> int:
        return self._users.count()

    def check_new_name(self, name: str) -> None:
        """Refuse an invalid or taken name (before any password is asked for or judged)."""
        check_user_name(name)
        if self.get(name) is not None:
            raise _taken(name)

    def add(self, name: str, password: str, quota_bytes: int | None) -> User:
        self.check_new_name(name)
        check_password(password)
        if not self._users.insert(User(name, quota_bytes, 0, time.time()), hash_password(password)):
            raise _taken(name)  # added meanwhile, by another process
        return self.require(name)

    def remove(self, name: str) -> None:
        self.require(name)
        self._users.delete(name)
        self._verified.changed()

    def generation(self) -> bytes:
        """A value that changes whenever a password changes or a user is removed, by any
        process on this data folder; reading it is a memory access (provider/credential_cache.py)."""
        return self._verified.generation()

    def set_password(self, name: str, password: str) -> None:
        self.require(name)
        check_password(password)
        self._users.set_password_hash(name, hash_password(password))
        self._verified.changed()

    def set_quota(self, name: str, quota_bytes: int | None) -> None:
        self.require(name)
        self._users.set_quota(name, quota_bytes)

    def add_used(self, name: str, delta: int) -> None:
        if delta:
            self._users.add_used(name, delta)

    def set_used(self, name: str, used_bytes: int) -> None:
        self._users.set_used(name, used_bytes)

    def verified_before(self, name: str, password: str) -> bool:
        """True if `password` is `name`'s and was verified since the last change; a dictionary
        lookup. False means only `verify` can tell."""
        return self._verified.known(name, password)

    def verify(self, name: str, password: str) -> bool:
        """True if `password` is `name`'s; constant-time, and cheap after the first success.

        An unknown name is checked against a hash of a random password, through the same
        single `password_matches` call a known name gets, so the answer takes as long.
        """
        if self.verified_before(name, password):
            return True
        generation = self._verified.generation()
        found = self._users.password_hash(name) if USER_NAME.match(name or "") else None
        stored = found if found is not None else self._unknown_user_hash
        if not password_matches(password, stored) or found is None:
            return False
        self._verified.remember(name, password, generation)
        return True
