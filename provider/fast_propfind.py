"""A fast path for the request file managers send most: PROPFIND with Depth 0 or 1.

WsgiDAV answers a PROPFIND through its generic property machinery: per entry a resource
object, a path check, a lock query and a dead-property query, then one lxml element per
property. This middleware (placed after authentication, before WsgiDAV's resolver) answers
the common case from one directory scan, one query for the folder's dead properties and one
for the user's locks, writing the XML directly; a listing of more than STREAM_FROM entries
is sent in pieces as it is written.

It applies to `allprop` (or an empty body) and to `<prop>` lists of the live properties in
`_LIVE`, on a folder or file outside `downloads/`, while the user holds no lock. Anything
else (placeholders, locks, `propname`, dead properties asked by name) goes to WsgiDAV as
before. The answer matches WsgiDAV's; `tests/test_fast_propfind.py` compares the two.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote
from xml.sax.saxutils import escape

from lxml import etree
from wsgidav import util
from wsgidav.mw.base_mw import BaseMiddleware

from provider.http_dates import rfc1123, rfc1123_now
from provider.mime_types import mime_type
from engine.naming import xml_safe_name
from provider.resources import file_etag

if TYPE_CHECKING:
    from provider.spaces import SpacesProvider

_D = "{DAV:}"
_LIVE = {
    f"{_D}{name}"
    for name in ("resourcetype", "creationdate", "getcontentlength", "getcontenttype", "getetag", "getlastmodified",
                 "displayname", "lockdiscovery", "supportedlock", "quota-used-bytes", "quota-available-bytes")
}
_QUOTA = (f"{_D}quota-used-bytes", f"{_D}quota-available-bytes")
_SUPPORTED_LOCK = (
    "<D:supportedlock>"
    + "".join(f"<D:lockentry><D:lockscope><D:{scope}/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>"
              for scope in ("exclusive", "shared"))
    + "</D:supportedlock>"
)
_HREF_SAFE = "/!*'(),$-_|."  # what WsgiDAV leaves unquoted in hrefs
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
STREAM_FROM = 2_000  # entries; smaller answers are sent whole, with a Content-Length
STREAM_PIECE = 500
# A file's `allprop` answer follows from its user, path and stat: file managers list the
# same folders again and again, so the text is kept, keyed by what it is made of.
_FILE_ANSWERS: dict[tuple[str, str, int, int, int, int], str] = {}
_MOST_FILE_ANSWERS = 20_000


class _NotFast(Exception):
    """The request needs WsgiDAV's general handling."""


class FastPropfind(BaseMiddleware):
    """Answers plain Depth 0/1 PROPFINDs itself; passes everything else on."""

    def __init__(self, wsgidav_app, next_app, config) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.provider: SpacesProvider = config["fetchdrive"]["provider"]
        self.enabled: bool = config["fetchdrive"]["fast_propfind"]

    def __call__(self, environ: dict, start_response):
        if not self.enabled or environ["REQUEST_METHOD"] != "PROPFIND" or environ.get("HTTP_DEPTH") not in ("0", "1"):
            return self.next_app(environ, start_response)
        body = _read_body(environ)
        headers = [("Content-Type", "application/xml; charset=utf-8"), ("Date", rfc1123_now())]
        try:
            listing = _Listing(self.provider, environ, body)
            entries = listing.entries()
            if len(entries) > STREAM_FROM:
                # Sent as it is made (chunked): the first bytes leave at once, and the
                # answer is never whole in memory.
                answer = listing.xml_pieces(entries)
            else:
                answer = [listing.xml(entries)]
                headers.append(("Content-Length", str(len(answer[0]))))
        except _NotFast:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            return self.next_app(environ, start_response)
        start_response("207 Multi-Status", headers)
        return answer


def _read_body(environ: dict) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length > 0 else b""


def _requested(body: bytes) -> list[str] | None:
    """Property names asked for; None for allprop."""
    if not body.strip():
        return None
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        raise _NotFast from None
    children = [child for child in root if isinstance(child.tag, str)]
    if root.tag != f"{_D}propfind" or len(children) != 1:
        raise _NotFast
    if children[0].tag == f"{_D}allprop":
        return None
    if children[0].tag != f"{_D}prop":
        raise _NotFast
    names = [prop.tag for prop in children[0] if isinstance(prop.tag, str)]
    if not names or any(name not in _LIVE for name in names):
        raise _NotFast
    return names


class _Listing:
    """One PROPFIND answer: the target, and its members for Depth 1."""

    def __init__(self, provider: SpacesProvider, environ: dict, body: bytes) -> None:
        self.names = _requested(body)
        self.provider = provider
        if environ.get("wsgidav.provider") is not provider:
            raise _NotFast
        self.environ = environ
        self._config: dict = environ["wsgidav.config"]
        self.user: str = environ["wsgidav.auth.user_name"]
        self.path = "/" + environ["PATH_INFO"].strip("/")  # WsgiDAV took the share off already
        if provider.in_downloads(self.path):
            raise _NotFast  # its listing holds placeholders
        try:
            self.file_path = self.provider._loc_to_file_path(self.path, environ)
            self.info = os.lstat(self.file_path)
        except Exception:
            raise _NotFast from None
        if not (stat.S_ISDIR(self.info.st_mode) or stat.S_ISREG(self.info.st_mode)):
            raise _NotFast
        self.ref_prefix = quote(f"{self.provider.share_path}/{self.user}")
        if provider.lock_manager.storage.any_lock_under(self.ref_prefix + "/"):
            raise _NotFast
        self._used = provider.quota.used(self.user)
        self._available = provider.quota.available(self.user)
        self._quota_text = f"<D:quota-used-bytes>{self._used}</D:quota-used-bytes>" + (
            "" if self._available is None else f"<D:quota-available-bytes>{self._available}</D:quota-available-bytes>")

    def entries(self) -> list[tuple[str, str, os.stat_result]]:
        """(path, name, stat) of the target and, for Depth 1, its members."""
        entries = [(self.path, os.path.basename(self.file_path), self.info)]
        if stat.S_ISDIR(self.info.st_mode) and self.environ["HTTP_DEPTH"] == "1":
            entries += self._members()
        return entries

    def xml(self, entries: list[tuple[str, str, os.stat_result]]) -> bytes:
        try:
            return "".join(self._pieces(entries, len(entries))).encode("utf-8")
        except UnicodeEncodeError:
            raise _NotFast from None  # a name that is not valid UTF-8: WsgiDAV decides

    def xml_pieces(self, entries: list[tuple[str, str, os.stat_result]]) -> Iterator[bytes]:
        """The answer of `xml`, in pieces of STREAM_PIECE entries. Raises _NotFast (before
        anything is sent) where `xml` would."""
        for path, _name, _info in entries:
            if not path.isascii():
                try:
                    path.encode("utf-8")
                except UnicodeEncodeError:
                    raise _NotFast from None
        return (piece.encode("utf-8") for piece in self._pieces(entries, STREAM_PIECE))

    def _pieces(self, entries: list[tuple[str, str, os.stat_result]], size: int) -> Iterator[str]:
        dead = self.provider.prop_manager.properties_under(self.ref_prefix + quote(self.path)) if self.names is None else {}
        parts = ["<?xml version='1.0' encoding='UTF-8'?>\n<D:multistatus xmlns:D=\"DAV:\">"]
        for path, name, info in entries:
            parts.append(self._response(path, name, info, dead))
            if len(parts) >= size:
                yield "".join(parts)
                parts = []
        parts.append("</D:multistatus>")
        yield "".join(parts)

    def _members(self) -> Iterable[tuple[str, str, os.stat_result]]:
        base = self.path.rstrip("/")
        with os.scandir(self.file_path) as scan:
            for entry in scan:
                if entry.is_symlink():
                    continue
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
                    yield f"{base}/{entry.name}", entry.name, info

    def _response(self, path: str, name: str, info: os.stat_result, dead: dict[str, dict[str, bytes]]) -> str:
        if self.names is not None or stat.S_ISDIR(info.st_mode) or dead:
            return self._new_response(path, name, info, dead)
        key = (self.user, path, info.st_ino, info.st_mtime_ns, info.st_ctime_ns, info.st_size)
        text = _FILE_ANSWERS.get(key)
        if text is None:
            if len(_FILE_ANSWERS) >= _MOST_FILE_ANSWERS:
                _FILE_ANSWERS.clear()
            text = _FILE_ANSWERS[key] = self._new_response(path, name, info, dead)
        return text

    def _new_response(self, path: str, name: str, info: os.stat_result, dead: dict[str, dict[str, bytes]]) -> str:
        is_folder = stat.S_ISDIR(info.st_mode)
        preferred = path.rstrip("/") + "/" if is_folder else path
        href = escape(quote(self.provider.share_path + preferred, safe=_HREF_SAFE))
        if self.names is None:
            found = [self._allprop(name, info, is_folder)]
            if dead:
                found += [_as_text(value) for value in dead.get(self.ref_prefix + quote(preferred), {}).values()]
            missing = []
        else:
            found, missing = [], []
            values = self._live(name, info, is_folder)
            for prop in self.names:
                value = values.get(prop)
                if value is None:
                    missing.append(f"<D:{prop[len(_D):]}/>")
                else:
                    found.append(value)
        text = f"<D:response><D:href>{href}</D:href>"
        if found:
            text += f"<D:propstat><D:prop>{''.join(found)}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
        if missing:
            text += f"<D:propstat><D:prop>{''.join(missing)}</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>"
        return text + "</D:response>"

    def _allprop(self, name: str, info: os.stat_result, is_folder: bool) -> str:
        """The live properties of `allprop`, in `_live`'s order (files without quota), in one
        piece: a listing asks this once per entry."""
        common = (f"<D:creationdate>{util.get_rfc3339_time(info.st_ctime)}</D:creationdate>"
                  f"<D:getlastmodified>{rfc1123(info.st_mtime)}</D:getlastmodified>"
                  f"<D:displayname>{escape(xml_safe_name(name))}</D:displayname><D:lockdiscovery/>{_SUPPORTED_LOCK}")
        if is_folder:
            return f"<D:resourcetype><D:collection/></D:resourcetype>{common}{self._quota_text}"
        return (f"<D:resourcetype/>{common}<D:getcontentlength>{info.st_size}</D:getcontentlength>"
                f"<D:getcontenttype>{escape(mime_type(name, self._config))}</D:getcontenttype>"
                f"<D:getetag>{file_etag(info)}</D:getetag>")

    def _live(self, name: str, info: os.stat_result, is_folder: bool) -> dict[str, str]:
        values = {
            f"{_D}resourcetype": "<D:resourcetype><D:collection/></D:resourcetype>" if is_folder else "<D:resourcetype/>",
            f"{_D}creationdate": f"<D:creationdate>{util.get_rfc3339_time(info.st_ctime)}</D:creationdate>",
            f"{_D}getlastmodified": f"<D:getlastmodified>{rfc1123(info.st_mtime)}</D:getlastmodified>",
            f"{_D}displayname": f"<D:displayname>{escape(xml_safe_name(name))}</D:displayname>",
            f"{_D}lockdiscovery": "<D:lockdiscovery/>",
            f"{_D}supportedlock": _SUPPORTED_LOCK,
        }
        if is_folder:
            values[f"{_D}quota-used-bytes"] = f"<D:quota-used-bytes>{self._used}</D:quota-used-bytes>"
            if self._available is not None:
                values[f"{_D}quota-available-bytes"] = f"<D:quota-available-bytes>{self._available}</D:quota-available-bytes>"
        else:
            # Asked by name, WsgiDAV gives files empty quota properties (allprop leaves them out).
            values |= {prop: f"<D:{prop[len(_D):]}/>" for prop in _QUOTA}
            values[f"{_D}getcontentlength"] = f"<D:getcontentlength>{info.st_size}</D:getcontentlength>"
            values[f"{_D}getcontenttype"] = f"<D:getcontenttype>{escape(mime_type(name, self._config))}</D:getcontenttype>"
            values[f"{_D}getetag"] = f"<D:getetag>{file_etag(info)}</D:getetag>"  # unquoted, as WsgiDAV 4.4 writes it
        return values


def _as_text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
