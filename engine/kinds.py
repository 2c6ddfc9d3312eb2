"""The closed sets of values the database stores: task states and source kinds.

They are `StrEnum`s whose values are the strings stored rows and API answers have always
held, so a member compares equal to, and is stored as, its plain string.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """A task's state (SPEC 6): queued -> downloading -> verifying -> done, with `waiting`
    between tries and `failed` / `cancelled` as the other ends."""

    QUEUED = "queued"
    DOWNLOADING = "downloading"
    WAITING = "waiting"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SourceKind(StrEnum):
    """What a task fetches."""

    URL = "url"
    ID = "id"  # a content ID: a catalog entry or sha256:
    TORRENT = "torrent"  # a magnet URI or a .torrent file
