"""Where a task's bytes come from: a URL is its own source; a catalog ID resolves to the
catalog entry's URL and checksum; a `sha256:` ID to each configured mirror in turn, the hash
being the checksum (SPEC 5)."""

from __future__ import annotations

from engine.catalog import Catalog
from engine.errors import PermanentError
from engine.instant import expected_sha256, is_content_hash, mirror_urls
from engine.kinds import SourceKind
from engine.tasks import Task

Candidate = tuple[str, str | None, str | None]
"""(url, expected sha256, file name)"""


def resolve(task: Task, catalog: Catalog, mirrors: tuple[str, ...]) -> list[Candidate]:
    """(url, expected sha256, file name) candidates for the task's source, in order."""
    if task.kind == SourceKind.URL:
        return [(task.source, task.sha256_expected, task.filename_hint)]
    content_id = task.source
    if is_content_hash(task):
        digest = content_id[7:].lower()
        expected = expected_sha256(task, digest)
        if not mirrors:
            # The same words whether or not anyone holds the content (SPEC 5).
            raise PermanentError(
                f"content {content_id} can only be fetched from a mirror, and no mirror is configured (engine.mirrors)"
            )
        return [(url, expected, task.filename_hint) for url in mirror_urls(mirrors, digest)]
    entry = catalog.get(content_id)
    if entry is None:
        raise PermanentError(
            f"unknown content ID {content_id!r}: this server has no entry for it; check the ID, "
            "or ask the server's administrator to add it"
        )
    return [(entry.url, expected_sha256(task, entry.sha256), task.filename_hint or entry.filename)]
