"""Trigger files: what a `.url`, `.webloc`, `.desktop`, `.id` or `.torrent` file in downloads/ asks for.

`parse_trigger` turns the bytes of one file into a `Trigger` or raises `TriggerError` with a
sentence naming what is wrong; it never raises anything else, whatever the bytes.
"""

from __future__ import annotations

import plistlib
import re
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from engine.devices import DeviceError, parse_names
from engine.kinds import SourceKind
from engine.origin_login import MAX_HEADERS, parse_header_line, trigger_secrets, without_userinfo
from engine.torrent_metainfo import MAX_METAINFO_BYTES, MetainfoError, make_magnet, parse_magnet, parse_metainfo

TRIGGER_SUFFIXES: frozenset[str] = frozenset({".url", ".webloc", ".desktop", ".id", ".torrent"})
MAX_TRIGGER_BYTES = 64 * 1024
MAX_URLS = 1000
MAX_URL_LENGTH = 8192
_URL_SCHEMES = ("http", "https")  # SPEC 4: and magnet:, which has no host (see check_url)
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTENT_ID = re.compile(r"^[\x21-\x7e]{1,512}$")
_LONE_BREAK = re.compile("\r(?!\n)|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}


class TriggerError(ValueError):
    """A trigger file that cannot be acted on; str(e) is a one-sentence, human-readable reason."""


@dataclass(frozen=True)
class Trigger:
    sources: tuple[str, ...]
    is_content_id: bool
    sha256: str | None
    filename: str | None
    metainfo: bytes | None = None  # a .torrent file's bytes
    send_to: tuple[str, ...] = ()  # devices that receive the finished file
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # header= lines, for each source's own origin
    # Per source, what its origin gets: header= lines and the link's user:pass@ (secret; it
    # follows from the file like the rest, so it takes no part in comparing triggers).
    secrets: tuple[str | None, ...] = field(default=(), repr=False, compare=False)


def is_os_junk(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("._") or lower.startswith("~$") or lower in _JUNK


def is_trigger_name(name: str) -> bool:
    lower = name.lower()
    suffix = lower[lower.rfind(".") :] if "." in lower else ""
    return suffix in TRIGGER_SUFFIXES and not is_os_junk(name) and not lower.endswith(".error.txt")


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def source_kind(source: str, is_content_id: bool) -> SourceKind:
    """The task kind of one source: an ID, a torrent (a magnet URI) or a URL."""
    if is_content_id:
        return SourceKind.ID
    return SourceKind.TORRENT if source[:7].lower() == "magnet:" else SourceKind.URL


def trigger_size_limit(name: str) -> int:
    return MAX_METAINFO_BYTES if name.lower().endswith(".torrent") else MAX_TRIGGER_BYTES


def _check_magnet(uri: str) -> str:
    try:
        parse_magnet(uri)
    except MetainfoError as error:
        raise TriggerError(str(error)) from None
    return uri


def check_url(url: str) -> str:
    """The URL stripped, if it is an absolute http or https URL or a magnet: URI; else TriggerError.
    Any other scheme (ftp:, file:, data:, ...) is refused here, when the trigger is read (SPEC 4)."""
    url = url.strip()
    quoted = _shorten(without_userinfo(url))  # a password in the link is never repeated
    if len(url) > MAX_URL_LENGTH:
        raise TriggerError(f"URL {quoted!r} is longer than {MAX_URL_LENGTH} characters")
    if not re.match(r"[a-z][a-z0-9+.-]*:", url, re.IGNORECASE):
        raise TriggerError(f"{quoted!r} is not a link; write one URL a line, such as https://example.com/file.iso")
    if re.search(r"[\s\x00-\x1f\x7f]", url):
        raise TriggerError(f"URL {quoted!r} contains spaces or control characters; percent-encode them")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise TriggerError(f"{quoted!r} is not a valid URL") from None
    if parts.scheme.lower() == "magnet":
        return _check_magnet(url)
    if parts.scheme.lower() not in _URL_SCHEMES:
        shown = f"{parts.scheme}:" if parts.scheme else "no scheme"
        raise TriggerError(
            f"URL {quoted!r} uses {shown}, which fetchdrive does not download; "
            "use an http://, https:// or magnet: link"
        )
    if not host:
        raise TriggerError(f"URL {quoted!r} has no host name")
    return url


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise TriggerError("the file is not valid UTF-16 text") from None
    if b"\x00" in data:
        raise TriggerError("the file is binary, not a text link file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TriggerError("the file is binary or not UTF-8 text") from None


def _ini_sections(text: str) -> dict[str, dict[str, str]]:
    """A tolerant INI reader: last key wins, `;`/`#` comments, keys case-insensitive."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip().lower(), {})
        elif "=" in line and current is not None:
            key, _, value = line.partition("=")
            _keep(current, key, value)
    return sections


def _keep(options: dict[str, str], key: str, value: str) -> None:
    """Record one `key=value` line: the last one wins, except that `header=` lines add up
    (one a line, so "\n" can separate them)."""
    key, value = key.strip().lower(), value.strip()
    options[key] = f"{options[key]}\n{value}" if key == "header" and key in options else value


def _headers(values: dict[str, str]) -> tuple[tuple[str, str], ...]:
    lines = values["header"].split("\n") if "header" in values else []
    if len(lines) > MAX_HEADERS:
        raise TriggerError(f"more than {MAX_HEADERS} header= lines")
    try:
        return tuple(parse_header_line(line) for line in lines)
    except ValueError as error:
        raise TriggerError(str(error)) from None


def _lines_and_options(text: str) -> tuple[list[str], dict[str, str]]:
    """The non-blank, non-comment lines of a plain-text trigger, and its sha256=/filename=/header= lines."""
    lines: list[str] = []
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() in ("sha256", "filename", "send-to", "header"):
            _keep(options, key, value)
        else:
            lines.append(line)
    return lines, options


def _options(values: dict[str, str | None], count: int) -> tuple[str | None, str | None]:
    sha256, filename = values.get("sha256"), values.get("filename")
    if sha256 is not None:
        sha256 = str(sha256).strip()
        if not _SHA256.match(sha256):
            raise TriggerError(f"sha256={_shorten(sha256, 80)} is not 64 hexadecimal digits")
        sha256 = sha256.lower()
    if filename is not None:
        filename = str(filename).strip()
        if not filename:
            raise TriggerError("filename= is empty")
    if (sha256 or filename) and count > 1:
        raise TriggerError("sha256= and filename= apply to one URL; put each URL in its own trigger file")
    return sha256, filename


def _parse_url_file(text: str) -> Trigger:
    sections = _ini_sections(text)
    if "internetshortcut" in sections:
        section = sections["internetshortcut"]
        if not section.get("url"):
            raise TriggerError("the [InternetShortcut] section has no URL= line")
        sha256, filename = _options(section, 1)
        return Trigger((check_url(section["url"]),), False, sha256, filename, headers=_headers(section))
    urls: list[str] = []
    lines, options = _lines_and_options(text)
    for line in lines:
        url = check_url(line)
        if url not in urls:
            urls.append(url)
        if len(urls) > MAX_URLS:
            raise TriggerError(f"more than {MAX_URLS} URLs in one file; split it into several")
    if not urls:
        raise TriggerError("the file holds no URL")
    sha256, filename = _options(options, len(urls))
    return Trigger(tuple(urls), False, sha256, filename, headers=_headers(options))


def _parse_webloc(data: bytes) -> Trigger:
    try:
        plist = plistlib.loads(data)
    except RecursionError:
        raise TriggerError("the .webloc property list is nested too deeply") from None
    except Exception:  # plistlib raises many types (InvalidFileException, ExpatError, ValueError...)
        raise TriggerError("the .webloc file is not a valid property list (XML or binary)") from None
    if not isinstance(plist, dict):
        raise TriggerError("the .webloc property list holds no dictionary with a URL key")
    url = plist.get("URL")
    if not isinstance(url, str) or not url.strip():
        raise TriggerError("the .webloc property list has no URL string")
    sha256, filename = _options({k: v for k, v in plist.items() if k in ("sha256", "filename") and isinstance(v, str)}, 1)
    return Trigger((check_url(url),), False, sha256, filename)


def _parse_desktop(text: str) -> Trigger:
    entry = _ini_sections(text).get("desktop entry")
    if entry is None:
        raise TriggerError("the .desktop file has no [Desktop Entry] group")
    kind = entry.get("type", "")
    if kind != "Link":
        raise TriggerError(f"the .desktop file is Type={kind or '(missing)'}; only Type=Link files are downloads")
    if not entry.get("url"):
        raise TriggerError("the .desktop link has no URL= key")
    sha256, filename = _options(entry, 1)
    return Trigger((check_url(entry["url"]),), False, sha256, filename, headers=_headers(entry))


def _parse_id(text: str) -> Trigger:
    lines, options = _lines_and_options(text)
    if not lines:
        raise TriggerError("the file holds no content ID")
    if len(lines) > 1:
        raise TriggerError(f"an .id file holds one content ID; found a second line {_shorten(lines[1], 60)!r}")
    sha256, filename = _options(options, 1)
    return Trigger((check_content_id(lines[0]),), True, sha256, filename, headers=_headers(options))


def check_content_id(content_id: str) -> str:
    """The content ID as the engine keys it (a `sha256:` digest in lower case), else TriggerError."""
    if not _CONTENT_ID.match(content_id):
        raise TriggerError(f"content ID {_shorten(content_id, 60)!r} must be 1-512 printable ASCII characters without spaces")
    if content_id.lower().startswith("sha256:"):
        digest = content_id[7:]
        if not _SHA256.match(digest):
            raise TriggerError(f"{_shorten(content_id, 80)!r} is not sha256: followed by 64 hexadecimal digits")
        content_id = "sha256:" + digest.lower()
    return content_id


def _parse_torrent(data: bytes) -> Trigger:
    try:
        _meta, info = parse_metainfo(data)
    except MetainfoError as error:
        raise TriggerError(str(error)) from None
    return Trigger((make_magnet(info),), False, None, None, data)


def parse_trigger(name: str, data: bytes) -> Trigger:
    """What the trigger file `name` with content `data` asks for."""
    return _logins_apart(_parse_any(name, data))


def request_trigger(source: str, *, is_content_id: bool, sha256: str | None = None,
                    filename: str | None = None) -> Trigger:
    """What a request that names its parts one by one (the API, `fetchdrive add`) asks for:
    the same checks and the same result as a trigger file holding them, without the file's
    syntax, so no part can be read as another (a `#` comment, a `sha256=` line)."""
    checked = check_content_id(source) if is_content_id else check_url(source)
    expected, name = _options({"sha256": sha256, "filename": filename}, 1)
    return _logins_apart(Trigger((checked,), is_content_id, expected, name))


def _logins_apart(trigger: Trigger) -> Trigger:
    """The trigger with its links as they are shown (without `user:pass@`) and, beside each,
    the secret login its origin gets (engine/origin_login.py)."""
    if trigger.is_content_id:
        return replace(trigger, secrets=(trigger_secrets(None, trigger.headers),))
    secrets: dict[str, str | None] = {}
    for source in trigger.sources:
        secrets.setdefault(without_userinfo(source), trigger_secrets(source, trigger.headers))
    return replace(trigger, sources=tuple(secrets), secrets=tuple(secrets.values()))


def _parse_any(name: str, data: bytes) -> Trigger:
    suffix = name.lower()[name.rfind(".") :] if "." in name else ""
    if suffix not in TRIGGER_SUFFIXES:
        raise TriggerError(f"{name!r} is not a trigger; use a .url, .webloc, .desktop, .id or .torrent file")
    if suffix == ".torrent":
        return _parse_torrent(data)
    if len(data) > MAX_TRIGGER_BYTES:
        raise TriggerError("the file is too large: link files are at most 64 KiB")
    if not data.strip():
        raise TriggerError("the file is empty")
    if suffix == ".webloc":
        return _parse_webloc(data)
    text = _decode(data)
    if not text.strip():
        raise TriggerError("the file is empty")
    if _LONE_BREAK.search(text) and "header=" in text.lower():
        # A lone CR would end a header= line early and start a line of its own.
        raise TriggerError("the file has a line break other than LF or CRLF; header= lines need plain line ends")
    if suffix == ".url":
        trigger = _parse_url_file(text)
    elif suffix == ".desktop":
        trigger = _parse_desktop(text)
    else:
        trigger = _parse_id(text)
    return replace(trigger, send_to=_send_to(text))


def _send_to(text: str) -> tuple[str, ...]:
    """The devices of a `send-to=NAME[,NAME...]` line (the last one wins, as for other keys)."""
    names: tuple[str, ...] = ()
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().lower() == "send-to":
            try:
                names = parse_names(value)
            except DeviceError as error:
                raise TriggerError(str(error)) from None
    return names
