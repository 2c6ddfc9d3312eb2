"""The `users` table behind `UserRepository`: names, password hashes, quotas, used bytes.

`provider.accounts` holds the rules (names, passwords, hashing, the credential cache) and
asks this Protocol for storage; `SqliteUsers` fills it, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.database import Database
from engine.schema import from_row


@dataclass(frozen=True)
class User:
    name: str
    quota_bytes: int | None
    used_bytes: int
    created_at: float


@runtime_checkable
class UserRepository(Protocol):
    def get(self, name: str) -> User | None: ...
    def list(self) -> list[User]: ...
    def count(self) -> int: ...
    def password_hash(self, name: str) -> str | None:
        """The stored hash, read without waiting for writers (every request checks one)."""
    def insert(self, user: User, password_hash: str) -> bool:
        """Add the user; False (and nothing changed) if the name is taken."""
    def delete(self, name: str) -> None: ...
    def set_password_hash(self, name: str, password_hash: str) -> None: ...
    def set_quota(self, name: str, quota_bytes: int | None) -> None: ...
    def add_used(self, name: str, delta: int) -> None:
        """Add `delta` (maybe negative) to the used bytes: a plain sum, never cut at zero, so
        that concurrent bookings come out exact in whatever order they land (issue 13)."""
    def set_used(self, name: str, used_bytes: int) -> None: ...


class SqliteUsers:
    """The `UserRepository` (on either database)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def get(self, name: str) -> User | None:
        with self._database.read() as db:
            rows = list(db.query("select * from users where name = ?", [name]))
        return from_row(User, rows[0]) if rows else None

    def list(self) -> list[User]:
        with self._database.read() as db:
            return [from_row(User, row) for row in db.query("select * from users order by name")]

    def count(self) -> int:
        with self._database.read() as db:
            return db.execute("select count(*) from users").fetchone()[0]

    def password_hash(self, name: str) -> str | None:
        rows = self._database.read_committed("select password_hash from users where name = ?", [name])
        return rows[0][0] if rows else None

    def insert(self, user: User, password_hash: str) -> bool:
        with self._database.write() as db:
            return db.execute(
                "insert into users (name, password_hash, quota_bytes, used_bytes, created_at) values (?, ?, ?, ?, ?) "
                "on conflict (name) do nothing",
                [user.name, password_hash, user.quota_bytes, user.used_bytes, user.created_at],
            ).rowcount == 1

    def delete(self, name: str) -> None:
        with self._database.write() as db:
            db.execute("delete from users where name = ?", [name])

    def set_password_hash(self, name: str, password_hash: str) -> None:
        with self._database.write() as db:
            db.execute("update users set password_hash = ? where name = ?", [password_hash, name])

    def set_quota(self, name: str, quota_bytes: int | None) -> None:
        with self._database.write() as db:
            db.execute("update users set quota_bytes = ? where name = ?", [quota_bytes, name])

    def add_used(self, name: str, delta: int) -> None:
        with self._database.write() as db:
            db.execute("update users set used_bytes = used_bytes + ? where name = ?", [delta, name])

    def set_used(self, name: str, used_bytes: int) -> None:
        with self._database.write() as db:
            db.execute("update users set used_bytes = ? where name = ?", [used_bytes, name])
