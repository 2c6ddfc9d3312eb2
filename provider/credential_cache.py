"""Remembers verified passwords, so a request's Basic check costs a dictionary lookup.

WebDAV clients send the password with every request, and an scrypt check costs ~50 ms; even
the database read that finds the stored hash costs a GIL hand-off per request under load.
A password that matched once is remembered as a keyed BLAKE2b MAC of user and password
under a per-process random key: the password itself is never kept, and the key never
leaves the process.

What forgets: any change of a password or removal of a user, in this process or another one
on the same data folder (`fetchdrive user passwd` runs as its own process). Such a change
writes a new random value into a small shared file, `credentials.generation`, which every
process maps into memory; an entry is valid only while the value it was verified under is
still there. Reading a mapped word is a memory access, not a system call.
Ordering (see `Accounts.verify`): the generation is read before the stored hash, and a
change writes it after its commit, so a check that saw the old hash is never kept past it.

Nodes on several machines share the data folder over a network filesystem, where a mapped
file does not follow another machine's writes. On PostgreSQL the generation is therefore
also kept in the database (`DatabaseGeneration`), read at most once a second: a change on one
node reaches every other within that second.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import secrets
import threading
import time
from pathlib import Path

from engine.database import Database

_WORD = 8
_MOST_ENTRIES = 10_000  # only right passwords get in; the bound is against endless rotation
_REFRESH = 1.0  # seconds a node trusts the database's generation before reading it again


class DatabaseGeneration:
    """The generation as a row of the shared database, cached for `_REFRESH` seconds."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._value = b""
        self._read_at = float("-inf")

    def read(self) -> bytes:
        if time.monotonic() - self._read_at >= _REFRESH:
            rows = self._database.read_committed("select value from credential_generation where id = 1", [])
            self._value, self._read_at = (rows[0][0].encode() if rows else b""), time.monotonic()
        return self._value

    def change(self) -> None:
        value = secrets.token_hex(_WORD)
        with self._database.write() as db:
            db.execute("insert into credential_generation (id, value) values (1, ?) "
                       "on conflict (id) do update set value = excluded.value", [value])
        self._value, self._read_at = value.encode(), time.monotonic()


class CredentialCache:
    """Verified (user, password) pairs, valid while the shared generation is unchanged."""

    def __init__(self, generation_file: Path, shared: DatabaseGeneration | None = None) -> None:
        """`shared`: the database's generation too, where nodes may be on other machines."""
        self._key = secrets.token_bytes(32)
        self._shared = shared
        self._verified: dict[bytes, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        fd = os.open(generation_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _WORD:
                os.ftruncate(fd, _WORD)
            self._generation = mmap.mmap(fd, _WORD)
        finally:
            os.close(fd)

    def generation(self) -> bytes:
        """Read before the stored hash; pass to `remember`."""
        local = self._generation[:_WORD]
        return local if self._shared is None else local + self._shared.read()

    def known(self, user: str, password: str) -> bool:
        entry = self._verified.get(self._mac(user, password))
        return entry is not None and entry[0] == user and entry[1] == self.generation()

    def remember(self, user: str, password: str, generation: bytes) -> None:
        with self._lock:
            if len(self._verified) >= _MOST_ENTRIES:
                self._verified.clear()
            self._verified[self._mac(user, password)] = (user, generation)

    def changed(self) -> None:
        """A password changed or a user went away: every process forgets what it verified.
        Call after the change is committed."""
        with self._lock:
            self._verified.clear()
            if self._shared is not None:
                self._shared.change()
            self._generation[:_WORD] = secrets.token_bytes(_WORD)

    def _mac(self, user: str, password: str) -> bytes:
        # Keyed BLAKE2b is a MAC in one pass (HMAC-SHA256 takes two): it is on every request.
        return hashlib.blake2b(f"{user}\0{password}".encode("utf-8", "surrogatepass"), key=self._key,
                               digest_size=32).digest()
