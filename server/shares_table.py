"""The `shares` table behind `ShareRepository`; `server.shares` holds the rules (tokens,
passwords, the per-user cap) and `SqliteShares` the SQL, for SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.database import Database
from engine.schema import from_row
from provider.accounts import password_matches


@dataclass(frozen=True)
class Share:
    id: str
    owner: str
    path: str
    created_at: float
    expires_at: float | None
    password_hash: str | None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or time.time())

    def password_accepted(self, password: str) -> bool:
        return self.password_hash is None or password_matches(password, self.password_hash)


@runtime_checkable
class ShareRepository(Protocol):
    def insert(self, share: Share, token_sha256: str, *, at_most: int) -> bool:
        """Store the share unless its owner already has `at_most`; False then."""
    def for_owner(self, owner: str) -> list[Share]:
        """Newest first."""
    def own(self, owner: str, share_id: str) -> Share | None: ...
    def by_token_sha256(self, token_sha256: str) -> Share | None: ...
    def delete(self, owner: str, share_id: str) -> bool: ...
    def delete_owner(self, owner: str) -> None: ...


class SqliteShares:
    """The `ShareRepository` (on either database)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def insert(self, share: Share, token_sha256: str, *, at_most: int) -> bool:
        with self._database.write() as db:
            # A no-op that takes the owner's row lock on PostgreSQL (SQLite's write lock is
            # whole-file anyway): two inserts of one owner count one after the other.
            db.execute("update users set name = name where name = ?", [share.owner])
            if db.execute("select count(*) from shares where owner = ?", [share.owner]).fetchone()[0] >= at_most:
                return False
            db.execute(
                "insert into shares (id, owner, path, token_sha256, password_hash, created_at, expires_at) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                [share.id, share.owner, share.path, token_sha256, share.password_hash, share.created_at,
                 share.expires_at],
            )
        return True

    def _select(self, where: str, params: list) -> list[Share]:
        with self._database.read() as db:
            rows = list(db.query(f"select * from shares where {where} order by created_at desc", params))
        return [from_row(Share, row) for row in rows]

    def for_owner(self, owner: str) -> list[Share]:
        return self._select("owner = ?", [owner])

    def own(self, owner: str, share_id: str) -> Share | None:
        found = self._select("id = ? and owner = ?", [share_id, owner])
        return found[0] if found else None

    def by_token_sha256(self, token_sha256: str) -> Share | None:
        found = self._select("token_sha256 = ?", [token_sha256])
        return found[0] if found else None

    def delete(self, owner: str, share_id: str) -> bool:
        with self._database.write() as db:
            return db.execute("delete from shares where id = ? and owner = ?", [share_id, owner]).rowcount > 0

    def delete_owner(self, owner: str) -> None:
        with self._database.write() as db:
            db.execute("delete from shares where owner = ?", [owner])
