"""What the downloads folder shows besides real files: read-only placeholders.

A `<name>.part` placeholder stands for an unfinished task; its size is the bytes saved so
far and GET returns them. The status file lists unfinished and failed tasks as plain text,
for people who only have a file manager. Placeholders cannot be written, deleted, moved or
locked: deleting the trigger file is how a download is cancelled. `DownloadsHooks` is what
the provider needs from the engine.
"""

from __future__ import annotations

import io
from typing import Protocol

from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVNonCollection

from engine.placeholders import Placeholder
from provider.resources import user_ref_url


class DownloadsHooks(Protocol):
    """The engine's side of the downloads folder."""

    def trigger_ready(self, user: str, rel_path: str) -> None:
        """A complete, unlocked, non-empty trigger file is at `rel_path` (e.g. `downloads/a.url`)."""

    def path_removed(self, user: str, rel_path: str) -> None:
        """A file or folder at `rel_path` was deleted or moved away."""

    def placeholders(self, user: str, folder: str) -> list[Placeholder]:
        """Placeholders to list in `folder` (e.g. `downloads/sub`)."""


class _PartialContent:
    """The first `size` bytes of the temporary file, read-only."""

    def __init__(self, path: str | None, size: int) -> None:
        self._remaining = size
        self._file = open(path, "rb") if path and size else None

    def read(self, count: int = -1) -> bytes:
        if self._file is None or self._remaining <= 0:
            return b""
        count = self._remaining if count < 0 else min(count, self._remaining)
        data = self._file.read(count)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        if self._file:
            self._file.close()


class PartResource(DAVNonCollection):
    """A read-only placeholder: an unfinished download, or the status file."""

    def __init__(self, path: str, environ: dict, placeholder: Placeholder) -> None:
        super().__init__(path, environ)
        self._placeholder = placeholder

    def get_content_length(self) -> int:
        return self._placeholder.size

    def get_content_type(self) -> str:
        return "text/plain; charset=utf-8" if self._placeholder.content is not None else "application/octet-stream"

    def get_creation_date(self) -> float:
        return self._placeholder.modified

    def get_last_modified(self) -> float:
        return self._placeholder.modified

    def get_display_name(self) -> str:
        return self._placeholder.name

    def get_etag(self) -> None:
        return None

    def support_etag(self) -> bool:
        return False

    def support_ranges(self) -> bool:
        return False

    def prevent_locking(self) -> bool:
        return True

    def get_content(self):
        if self._placeholder.content is not None:
            return io.BytesIO(self._placeholder.content)
        try:
            return _PartialContent(self._placeholder.temp_path, self._placeholder.size)
        except FileNotFoundError:
            return _PartialContent(None, 0)

    def _refuse(self, *args, **kwargs):
        raise DAVError(HTTP_FORBIDDEN, f"{self.name} is read-only; delete the trigger file to cancel a download")

    begin_write = delete = copy_move_single = move_recursive = handle_delete = _refuse

    def handle_copy(self, dest_path, *, depth_infinity):
        self._refuse()

    def handle_move(self, dest_path):
        self._refuse()

    def get_ref_url(self) -> str:
        return user_ref_url(self.provider.share_path, self.environ["wsgidav.auth.user_name"], self.path)
