"""File names: the one rule for every name that enters a space, whoever chose it.

Names a client chooses (PUT, MKCOL, LOCK, COPY/MOVE destinations) are kept as given, except
that `client_name_problem` refuses what XML 1.0 cannot carry (C0 controls, lone surrogates,
U+FFFE/U+FFFF): such a name would make every PROPFIND of its folder invalid XML, so no
client could list that folder again.

Names the server chooses for a download (a trigger's `filename=`, Content-Disposition
(RFC 6266), the URL) go through `sanitize_filename`: one plain name that cannot leave its
folder (no separators, no `.`/`..`, no Windows reserved device names or trailing
dots/spaces, at most 255 bytes of UTF-8), without control, format, bidirectional or other
invisible characters (U+202E turns `exe.txt` into `txt.exe` on screen), and never in the
form of an entry the product shows itself (a `.part` placeholder, an `.error.txt` file, the
status file): those get a `_` (SPEC 4, safety rules).
"""

from __future__ import annotations

import re
import unicodedata
from email.message import Message
from typing import Callable
from urllib.parse import unquote, urlsplit

MAX_NAME_BYTES = 255
PART_SUFFIX = ".part"
ERROR_SUFFIX = ".error.txt"
STATUS_FILE = "fetchdrive-status.txt"
_WINDOWS_INVALID = re.compile(r'[<>:"/\\|?*]')
# https://www.w3.org/TR/xml/#charsets, and tab, CR and LF too: XML parsers rewrite those.
_NOT_IN_XML = re.compile("[\x00-\x1f\ud800-\udfff\ufffe\uffff]")
# Control (Cc), format (Cf: bidi overrides, zero-width...), surrogate, line and paragraph
# separators, and default-ignorable characters that draw nothing though not in those classes.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_INVISIBLE = re.compile("[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u3164\ufe00-\ufe0f\uffa0\ufffe\uffff]")
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


def client_name_problem(name: str) -> str | None:
    """Why a client may not create an entry called `name` (one path segment), or None."""
    bad = _NOT_IN_XML.search(name)
    if bad is None:
        return None
    return (f"the name holds the character U+{ord(bad.group()):04X}, which WebDAV listings (XML) cannot carry; "
            "choose another name")


def xml_safe_name(name: str) -> str:
    """`name` as a listing can show it: what XML cannot carry becomes U+FFFD (for names made
    before the rule, or by hand on the server's disk)."""
    return _NOT_IN_XML.sub("\ufffd", name)


def _visible(name: str) -> str:
    name = _INVISIBLE.sub("", name)
    return "".join(ch for ch in name if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES)


def _fit(stem: str, ext: str) -> str:
    """`stem + ext` in at most MAX_NAME_BYTES, shortening the stem."""
    room = MAX_NAME_BYTES - len(ext.encode("utf-8"))
    return _truncate_utf8(stem, room).rstrip(". ") + ext


def _unlike_the_product(name: str) -> str:
    """`name`, or a `_` added where it would pass for an entry the product shows itself."""
    lower = name.lower()
    if lower.endswith(PART_SUFFIX):
        return _fit(name[: -len(PART_SUFFIX)], name[-len(PART_SUFFIX) :] + "_")
    if lower.endswith(ERROR_SUFFIX) or lower == STATUS_FILE:
        return _fit(name[:-4], "_" + name[-4:])  # before `.txt`, so that it still opens as text
    return name


def sanitize_filename(name: str, fallback: str = "download") -> str:
    """A safe, plain, visible file name for what an origin or a trigger says (see above)."""
    name = unicodedata.normalize("NFC", _visible(name or ""))
    name = re.split(r"[/\\]", name)[-1]
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
        name = _fit(stem, ext)
    return _unlike_the_product(name) or fallback


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
