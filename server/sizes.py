"""Parsing and printing of the SIZE forms users type: `500M`, `10G`, `1.5T`, plain bytes, `none`.

K, M, G and T are powers of 1024 (a `10G` quota is 10 GiB), so figures match what file
managers show. `none` means "no limit" and is returned as None.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class SizeError(ValueError):
    """A size that is none of the accepted forms."""


def parse_size(text: str | int | float | None) -> int | None:
    """Return the size in bytes, or None for `none` (no limit)."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise SizeError(f"{text!r} is not a size; use e.g. 500M, 10G, 1.5T, 1048576 or none")
    if isinstance(text, (int, float)):
        if text < 0:
            raise SizeError(f"{text!r} is negative; sizes are 0 or more")
        return int(text)
    if text.strip().lower() == "none":
        return None
    match = _SIZE.match(text)
    if not match:
        raise SizeError(f"{text!r} is not a size; use e.g. 500M, 10G, 1.5T, 1048576 or none")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def format_size(size: int | None) -> str:
    """Print a byte count the short way (`1.5G`), or `none`."""
    if size is None:
        return "none"
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit]:
            value = size / _UNITS[unit]
            return f"{value:.1f}".rstrip("0").rstrip(".") + unit
    return f"{size}B"
