"""What is known about one transfer (`Download`) and, when it runs in parallel ranges, about
each range (`Segment`); both survive between tries and, through the task row, restarts."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from engine.origin_login import Login


@dataclass
class Segment:
    """Bytes [start, end) of the file, fetched by one connection; `done` of them are saved."""

    start: int
    end: int
    done: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def offset(self) -> int:
        """Where in the file the segment's next byte goes."""
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.done >= self.length


def load_segments(saved: str | None) -> list[Segment] | None:
    """Segments from the task row: JSON `[[start, end, done], ...]`, as every version saved them."""
    return [Segment(*triple) for triple in json.loads(saved)] if saved else None


def dump_segments(segments: list[Segment] | None) -> str | None:
    """The task row's form of `segments` (see load_segments)."""
    return json.dumps([[segment.start, segment.end, segment.done] for segment in segments]) if segments else None


@dataclass
class Download:
    """What is known about one transfer; survives between tries (and, via the task row, restarts)."""

    url: str
    temp_path: Path
    bytes_done: int = 0
    bytes_total: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    content_disposition: str | None = None
    # the ranges when fetched in parallel segments, else None
    segments: list[Segment] | None = None
    login: Login | None = field(default=None, repr=False)
    hasher: "hashlib._Hash | None" = field(default=None, repr=False)
    # Set while the hash is still catching up with bytes already saved: waits, returns the hasher.
    pending_hash: "Callable[[], hashlib._Hash] | None" = field(default=None, repr=False)

    def validator(self) -> str | None:
        """What guards a ranged request (If-Range): the strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def sha256(self) -> str:
        """The content's SHA-256, once the hash has caught up (which may mean waiting for it)."""
        if self.pending_hash is not None:
            self.hasher, self.pending_hash = self.pending_hash(), None
        assert self.hasher is not None
        return self.hasher.hexdigest()

    def note_headers(self, response: requests.Response) -> None:
        """Take the content's validators, final address and file name from a response that starts it."""
        self.etag = response.headers.get("ETag")
        self.last_modified = response.headers.get("Last-Modified")
        self.final_url = response.url
        self.content_disposition = response.headers.get("Content-Disposition")
