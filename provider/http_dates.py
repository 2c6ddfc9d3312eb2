"""HTTP dates (`Last-Modified`, `Date`, `getlastmodified`) as WsgiDAV writes them, cheaper.

WsgiDAV formats them with `email.utils.formatdate`, which goes through a time tuple and
`%` formatting; in a listing of thousands of entries that was a fifth of the time. These
give the same strings (`tests/test_fast_get.py` and `tests/test_fast_propfind.py` compare
whole answers with WsgiDAV's).
"""

from __future__ import annotations

import functools
import time
from datetime import datetime, timezone

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_now_second = -1
_now_text = ""


@functools.lru_cache(maxsize=4096)  # a file's date is formatted at every GET of it: once is enough
def rfc1123(seconds: float) -> str:
    """`Sat, 28 Nov 2026 19:13:08 GMT`, as `util.get_rfc1123_time(seconds)`."""
    # The same conversion formatdate makes (it rounds to microseconds, which can carry into
    # the next second), then its format.
    when = datetime.fromtimestamp(seconds, timezone.utc)
    return (f"{_DAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} "
            f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} GMT")


def rfc1123_now() -> str:
    """The `Date` header: formatted once a second."""
    global _now_second, _now_text
    now = time.time()
    if int(now) != _now_second:
        # Two threads may both format the new second; both get the same text.
        _now_text, _now_second = rfc1123(int(now)), int(now)
    return _now_text

