"""When content the server already holds may reach a user without a transfer (SPEC 5).

The content store is shared and users are strangers, so the store answers a task only through
that task's own source, never through a hash alone:

- a URL that a recent task fetched (within `engine.cache_ttl`), when its origin, asked now
  with this task's own URL and login (SPEC 4c), confirms with a conditional request that
  nothing changed since, so content fetched with one user's login never reaches a user
  the origin would refuse;
  the URL behind a catalog ID is such a URL too, both ways;
- a catalog ID whose entry names a sha256 that an earlier task of the same ID delivered;
- a `sha256:` ID that a configured mirror confirms it serves: it answers 2xx, with the size
  and the first bytes of the stored object.

An object that no user's file links to any more is not held. The store is looked at only after
the task's own source has answered, so a source that does not answer costs the same work, and
ends in the same words, whether or not anyone holds the content. Whatever the path, the content
must match the trigger's `sha256=` (and the sum its ID names), or the task fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import requests

from engine.catalog import CatalogEntry
from engine.content_store import ContentStore
from engine.errors import FetchError, PermanentError, failure
from engine.fetcher import Fetcher
from engine.kinds import SourceKind
from engine.origin_login import Login
from engine.outcomes import Outcome
from engine.ranged_get import content_range
from engine.repository import CatalogRepository, TaskRepository
from engine.tasks import Task

# How many leading bytes a mirror must show to prove that it serves the stored object.
_SAMPLE = 4096


@dataclass(frozen=True)
class Held:
    """Stored content a task may receive, and what the task row should remember of it."""

    digest: str
    name: str  # used when the trigger gives no filename=
    fetched_url: str | None
    etag: str | None = None
    last_modified: str | None = None


def is_content_hash(task: Task) -> bool:
    return task.kind == SourceKind.ID and task.source.lower().startswith("sha256:")


def mirror_urls(templates: tuple[str, ...], digest: str) -> list[str]:
    return [template.replace("{sha256}", digest) for template in templates]


def checksum_mismatch(expected: str, got: str) -> FetchError:
    return failure(Outcome.CHECKSUM_MISMATCH, expected=expected, got=got)


def expected_sha256(task: Task, named: str | None) -> str | None:
    """The sum the content must have: the trigger's `sha256=` and the one its ID names (a
    `sha256:` ID, a catalog entry's sum). Two different sums can never both hold."""
    stated = {value.lower() for value in (task.sha256_expected, named) if value}
    if len(stated) > 1:
        raise PermanentError(
            f"checksum mismatch: the trigger expects sha256 {task.sha256_expected.lower()} but its ID "
            f"{task.source} names sha256 {named.lower()}; nothing was downloaded"
        )
    return stated.pop() if stated else None


class InstantSource:
    """Finds stored content that a task's own source leads to (see the module docstring)."""

    def __init__(self, tasks: TaskRepository, catalog: CatalogRepository, store: ContentStore, fetcher: Fetcher, *,
                 mirrors: tuple[str, ...], cache_ttl: float, holds: Callable[[str], bool],
                 filed_digest: Callable[[int], str | None]) -> None:
        self._tasks = tasks
        self._catalog = catalog
        self._store = store
        self._fetcher = fetcher
        self._mirrors = mirrors
        self._cache_ttl = cache_ttl
        self._holds = holds  # whether a user's file links to the object, once pending filings settle
        self._filed_digest = filed_digest

    def find(self, task: Task, login: Login) -> Held | None:
        """What the store may deliver for `task`, whose own login is `login`, or None (then it
        is transferred). Raises the checksum-mismatch PermanentError when that content is not
        what the trigger expects."""
        if task.kind == SourceKind.URL:
            held, expected = self._fresh(task.source, task.display_name, login, keep_url_name=True), task.sha256_expected
        elif is_content_hash(task):
            digest = task.source[7:].lower()
            expected = expected_sha256(task, digest)
            held = self._mirrored(digest, task.display_name)
        else:
            entry = self._catalog.get(task.source)
            if entry is None:
                return None
            expected = expected_sha256(task, entry.sha256)
            name = entry.filename or task.display_name
            held = self._catalogued(entry, name) or self._fresh(entry.url, name, login, keep_url_name=False)
        if held is not None and expected and held.digest != expected.lower():
            raise checksum_mismatch(expected.lower(), held.digest)
        return held

    def _fresh(self, url: str, name: str, login: Login, *, keep_url_name: bool) -> Held | None:
        """`keep_url_name`: a URL task takes the name an earlier URL task chose (it may come
        from Content-Disposition); a catalog ID keeps its own."""
        answers: dict[tuple[str | None, str | None], bool] = {}
        for previous in self._tasks.finished_from_url(url, time.time() - self._cache_ttl):
            validators = (previous.etag, previous.last_modified)
            if validators == (None, None):
                continue
            if validators not in answers:
                answers[validators] = self._unchanged(url, *validators, login.at(url))
            digest = self._filed_digest(previous.id) if answers[validators] else None
            if digest and self._holds(digest):
                named = previous.display_name if keep_url_name and previous.kind == SourceKind.URL else name
                return Held(digest, named, url, *validators)
        return None

    def _unchanged(self, url: str, etag: str | None, last_modified: str | None, login: Login) -> bool:
        """Ask the origin, with a conditional request carrying the asking task's own login,
        whether the content is still the same: an origin that refuses this user says no."""
        headers = {"Accept-Encoding": "identity"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        try:
            with self._fetcher.get(url, headers, login) as response:
                return response.status_code == 304
        except FetchError:
            return False

    def _catalogued(self, entry: CatalogEntry, name: str) -> Held | None:
        if not entry.sha256:
            return None
        for previous in self._tasks.finished_source(entry.id, since=0):
            if previous.kind == SourceKind.ID and self._filed_digest(previous.id) == entry.sha256 and self._holds(entry.sha256):
                return Held(entry.sha256, name, previous.fetched_url, previous.etag, previous.last_modified)
        return None

    def _mirrored(self, digest: str, name: str) -> Held | None:
        for url in mirror_urls(self._mirrors, digest):
            sample = self._mirror_sample(url)
            if sample is None:
                continue
            # The first mirror that serves the hash decides; if its bytes are not the stored
            # object's, the transfer from it (checked against the hash) tells what is wrong.
            if self._holds(digest) and self._store_matches(digest, *sample):
                return Held(digest, name, url)
            return None
        return None

    def _mirror_sample(self, url: str) -> tuple[bytes, int | None] | None:
        """The first bytes a mirror serves at `url` and its total size (None: not told), or
        None if it does not answer 2xx."""
        try:
            with self._fetcher.get(url, {"Accept-Encoding": "identity", "Range": f"bytes=0-{_SAMPLE - 1}"}) as response:
                if response.status_code not in (200, 206):
                    return None
                head = b""
                for chunk in response.iter_content(_SAMPLE):
                    head += chunk
                    if len(head) >= _SAMPLE:
                        break
                if response.status_code == 206:
                    found = content_range(response)
                    total = found.total if found else None
                else:
                    length = response.headers.get("Content-Length", "")
                    total = int(length) if length.isdigit() else None
                return head[:_SAMPLE], total
        except (FetchError, requests.exceptions.RequestException, OSError, ValueError):
            return None

    def _store_matches(self, digest: str, head: bytes, total: int | None) -> bool:
        try:
            with open(self._store.object_path(digest), "rb") as stored:
                size = stored.seek(0, 2)
                stored.seek(0)
                return (total is None or total == size) and len(head) == min(_SAMPLE, size) and stored.read(len(head)) == head
        except FileNotFoundError:
            return False
