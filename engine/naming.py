"""Safe file names: from triggers, Content-Disposition headers (RFC 6266) and URLs.

Whatever an origin or a trigger says, the result is one plain name that cannot leave its
folder: no separators, no `.`/`..`, no control characters, no Windows reserved device
names or trailing dots/spaces, at most 255 bytes of UTF-8.
"""

from __future__ import annotations

import re
import unicodedata
from email.message import Message
from typing import Callable
from urllib.parse import unquote, urlsplit

MAX_NAME_BYTES = 255
_WINDOWS_INVALID = re.compile(r'[<>:"/\\|?*]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_EXTENDED = re.compile(r"filename\*\s*=\s*([^;]+)", re.IGNORECASE)
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)


def _truncate_utf8(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore")


def split_extension(name: str) -> tuple[str, str]:
    """("archive.tar", ".gz"): the extension is the last dot-suffix, unless the name starts with it."""
    dot = name.rfind(".")
    if dot <= 0 or dot == len(name) - 1:
        return name, ""
    return name[:dot], name[dot:]


def sanitize_filename(name: str, fallback: str = "download") -> str:
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = _CONTROL.sub("", name)
    name = _WINDOWS_INVALID.sub("_", name)
    name = name.strip().rstrip(". ")
    if name in ("", ".", ".."):
        name = fallback
    if _RESERVED.match(name):
        name = "_" + name
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        stem, ext = split_extension(name)
        if len(ext.encode("utf-8")) > 32:
            stem, ext = name, ""
        name = _truncate_utf8(stem, MAX_NAME_BYTES - len(ext.encode("utf-8"))).rstrip(". ") + ext
    return name or fallback


def filename_from_content_disposition(header: str | None) -> str | None:
    """The file name an RFC 6266 header names: `filename*` (RFC 8187) wins over `filename`."""
    if not header:
        return None
    extended = _EXTENDED.search(header)
    if extended:
        charset, _, encoded = extended.group(1).strip().strip('"').partition("'")
        _language, _, value = encoded.partition("'")
        try:
            name = unquote(value, encoding=charset or "utf-8", errors="strict")
        except (LookupError, UnicodeDecodeError):
            name = None
        if name:
            return name
    message = Message()
    try:
        message["Content-Disposition"] = header
        params = dict(message.get_params(header="Content-Disposition", unquote=True) or [])
    except (ValueError, TypeError, LookupError, UnicodeError):
        return None
    name = params.get("filename")
    if not isinstance(name, str):
        return None
    return name.replace("\\\\", "\\") or None


def filename_from_url(url: str) -> str | None:
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    segment = path.rstrip("/").rsplit("/", 1)[-1] if path.strip("/") else ""
    return unquote(segment, errors="replace") or None


def choose_filename(*, trigger_filename: str | None, content_disposition: str | None, final_url: str | None, trigger_stem: str) -> str:
    """SPEC 4.4: the trigger's name, else Content-Disposition, else the URL's last segment, else the stem."""
    for candidate in (
        trigger_filename,
        filename_from_content_disposition(content_disposition),
        filename_from_url(final_url) if final_url else None,
        trigger_stem,
    ):
        if candidate and sanitize_filename(candidate, fallback=""):
            return sanitize_filename(candidate)
    return sanitize_filename(trigger_stem)


def unique_name(name: str, exists: Callable[[str], bool]) -> str:
    """`name`, or `stem (1).ext`, `stem (2).ext`... (before the last extension) if taken."""
    if not exists(name):
        return name
    stem, ext = split_extension(name)
    number = 1
    while True:
        suffix = f" ({number}){ext}"
        candidate = _truncate_utf8(stem, MAX_NAME_BYTES - len(suffix.encode("utf-8"))) + suffix
        if not exists(candidate):
            return candidate
        number += 1
