"""The one check of a ranged answer, shared by every resume path (one stream, each segment,
the sync client): a 206 continues the saved bytes only if its Content-Range starts where they
end, stays within what was asked, names the same total, and the ETag is the one they came
with; a 200 is the whole content again (start over); any other 206 raises Restart, so a file
is never stitched from two versions."""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests

from engine.errors import Restart

CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ContentRange:
    first: int
    last: int  # inclusive, as in the header
    total: int | None  # None for `*`


def content_range(response: requests.Response) -> ContentRange | None:
    match = CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if not match:
        return None
    return ContentRange(int(match.group(1)), int(match.group(2)), None if match.group(3) == "*" else int(match.group(3)))


@dataclass(frozen=True)
class RangedGet:
    """A request for the bytes from `start` (to `end`, exclusive, if given) of content whose
    saved bytes came with `etag` and have `total` bytes in all, guarded by If-Range `validator`."""

    start: int
    end: int | None = None
    validator: str | None = None
    etag: str | None = None
    total: int | None = None

    def headers(self) -> dict[str, str]:
        headers = {"Accept-Encoding": "identity"}
        if self.start or self.end is not None:
            headers["Range"] = f"bytes={self.start}-{'' if self.end is None else self.end - 1}"
        if self.validator and "Range" in headers:
            headers["If-Range"] = self.validator
        return headers

    def continues(self, response: requests.Response) -> bool:
        """True if `response` is a 206 that carries exactly the bytes asked for of the same
        content; False for a 200 (the whole content: start over); Restart for any other 206."""
        if response.status_code != 206:
            return False
        found = content_range(response)
        etag = response.headers.get("ETag")
        if found is None or found.first != self.start or found.last < found.first or (
            self.end is not None and found.last >= self.end
        ) or (
            self.total is not None and found.total is not None and found.total != self.total
        ) or (
            self.etag and etag and etag != self.etag
        ):
            raise Restart()
        return True
