"""The content store on a real folder: filing a download that is already published."""

from __future__ import annotations

import hashlib
from pathlib import Path

from engine.cluster_locks import StripedFileLocks
from engine.content_store import ContentStore
from provider.path_locks import PathLocks
from provider.space_writer import SpaceWriter

OLD = b"the downloaded bytes"
DIGEST = hashlib.sha256(OLD).hexdigest()


def published_download(tmp_path: Path) -> tuple[Path, Path]:
    """A temporary download and its hard link in a user's folder, as the engine publishes it."""
    (tmp_path / "tmp").mkdir()
    (tmp_path / "space").mkdir()
    temp = tmp_path / "tmp" / "7.part"
    temp.write_bytes(OLD)
    published = tmp_path / "space" / "file.bin"
    published.hardlink_to(temp)
    return temp, published


def relink(tmp_path: Path):
    """The space writer's relink, as the engine gets it (only its path locks are needed here)."""
    writer = SpaceWriter(None, PathLocks(StripedFileLocks(tmp_path / "locks", 4), tmp_path), tmp_path, lambda user: tmp_path, None)
    return writer.relink


def test_filing_new_content_keeps_the_published_file_as_the_stored_object(tmp_path):
    store = ContentStore(tmp_path / "store")
    temp, published = published_download(tmp_path)
    store.adopt(temp, DIGEST, published, relink(tmp_path))
    assert not temp.exists()
    assert store.object_path(DIGEST).samefile(published)


def test_filing_content_the_store_holds_links_the_published_file_to_the_stored_object(tmp_path):
    store = ContentStore(tmp_path / "store")
    store.object_path(DIGEST).parent.mkdir(parents=True)
    store.object_path(DIGEST).write_bytes(OLD)
    temp, published = published_download(tmp_path)
    store.adopt(temp, DIGEST, published, relink(tmp_path))
    assert store.object_path(DIGEST).samefile(published) and published.read_bytes() == OLD
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == []


def test_a_file_the_user_replaced_before_filing_is_left_alone(tmp_path):
    store = ContentStore(tmp_path / "store")
    store.object_path(DIGEST).parent.mkdir(parents=True)
    store.object_path(DIGEST).write_bytes(OLD)
    temp, published = published_download(tmp_path)
    replacement = tmp_path / "space" / "new"
    replacement.write_bytes(b"the user's own edit")
    replacement.replace(published)
    store.adopt(temp, DIGEST, published, relink(tmp_path))
    assert published.read_bytes() == b"the user's own edit"
    assert not temp.exists()


def test_content_whose_published_file_was_deleted_before_filing_is_not_kept(tmp_path):
    store = ContentStore(tmp_path / "store")
    temp, published = published_download(tmp_path)
    published.unlink()
    store.adopt(temp, DIGEST, published, relink(tmp_path))
    assert not store.has(DIGEST) and not temp.exists()
