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
"""

from __future__ import annotations

import hashlib
import mmap
import os
import secrets
import threading
from pathlib import Path

_WORD = 8
_MOST_ENTRIES = 10_000  # only right passwords get in; the bound is against endless rotation


class CredentialCache:
    """Verified (user, password) pairs, valid while the shared generation is unchanged."""

    def __init__(self, generation_file: Path) -> None:
        self._key = secrets.token_bytes(32)
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
        return self._generation[:_WORD]

    def known(self, user: str, password: str) -> bool:
        entry = self._verified.get(self._mac(user, password))
        return entry is not None and entry[0] == user and entry[1] == self._generation[:_WORD]

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
            self._generation[:_WORD] = secrets.token_bytes(_WORD)

    def _mac(self, user: str, password: str) -> bytes:
        # Keyed BLAKE2b is a MAC in one pass (HMAC-SHA256 takes two): it is on every request.
        return hashlib.blake2b(f"{user}\0{password}".encode("utf-8", "surrogatepass"), key=self._key,
                               digest_size=32).digest()
