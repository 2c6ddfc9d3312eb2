"""The content-ID catalog: maps an ID to the URL it is fetched from, with an optional
checksum and file name. Entries come from `fetchdrive catalog add` and the `catalog:` list
of the config (re-read at every start; an entry from the CLI wins over the config's).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from engine.database import Database
from engine.schema import from_row
from engine.triggers import TriggerError, parse_trigger

_ID = re.compile(r"^[\x21-\x7e]{1,512}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


class CatalogError(ValueError):
    """A bad catalog entry; str(e) names the field and the fix."""


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    url: str
    sha256: str | None
    filename: str | None
    origin: str  # "cli" or "config"


def check_entry(content_id: str, url: str, sha256: str | None, filename: str | None) -> None:
    if not _ID.match(content_id or ""):
        raise CatalogError(f"invalid ID {content_id!r}: use 1-512 printable ASCII characters without spaces")
    if content_id.lower().startswith("sha256:"):
        raise CatalogError(f"{content_id!r}: sha256: IDs name content by hash and need no catalog entry")
    try:
        parse_trigger("entry.url", url.encode())
    except TriggerError as error:
        raise CatalogError(f"URL of {content_id!r}: {error}") from None
    if sha256 is not None and not _SHA256.match(sha256):
        raise CatalogError(f"sha256 of {content_id!r} must be 64 hex digits, got {sha256!r}")
    if filename is not None and (not filename.strip() or "/" in filename or "\\" in filename):
        raise CatalogError(f"filename of {content_id!r} must be a plain file name, got {filename!r}")


class Catalog:
    """The `catalog` table: the `engine.repository.CatalogRepository`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def add(self, content_id: str, url: str, sha256: str | None = None, filename: str | None = None, *, origin: str = "cli") -> CatalogEntry:
        check_entry(content_id, url, sha256, filename)
        row = {
            "id": content_id,
            "url": url,
            "sha256": sha256.lower() if sha256 else None,
            "filename": filename,
            "origin": origin,
            "added_at": time.time(),
        }
        with self._database.write() as db:
            db.execute("insert into catalog (id, url, sha256, filename, origin, added_at) values (?, ?, ?, ?, ?, ?) "
                       "on conflict (id) do update set url = excluded.url, sha256 = excluded.sha256, "
                       "filename = excluded.filename, origin = excluded.origin, added_at = excluded.added_at",
                       list(row.values()))
        return self.get(content_id)

    def load_config_entries(self, entries: list[dict[str, str]]) -> None:
        """Replace the config's entries with `entries`, leaving CLI entries alone."""
        with self._database.write() as db:
            db.execute("delete from catalog where origin = 'config'")
            for entry in entries:
                if self.get(entry["id"]) is None:
                    self.add(entry["id"], entry["url"], entry.get("sha256"), entry.get("filename"), origin="config")

    def get(self, content_id: str) -> CatalogEntry | None:
        with self._database.read() as db:
            rows = list(db.query("select * from catalog where id = ?", [content_id]))
        if not rows:
            return None
        return from_row(CatalogEntry, rows[0])

    def list(self) -> list[CatalogEntry]:
        with self._database.read() as db:
            rows = list(db.query("select * from catalog order by id"))
        return [from_row(CatalogEntry, row) for row in rows]

    def remove(self, content_id: str) -> None:
        with self._database.write() as db:
            if db.execute("delete from catalog where id = ?", [content_id]).rowcount == 0:
                raise CatalogError(f"no catalog entry {content_id!r}; `fetchdrive catalog list` shows them")
