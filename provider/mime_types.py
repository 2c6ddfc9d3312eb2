"""The Content-Type WsgiDAV gives a file, remembered where it follows from the extension.

WsgiDAV asks `mimetypes` with the whole path, then its own table with the extension
(case-sensitively). For a name with at most one dot the answer follows from that
extension alone, so it is worked out once per extension; names with more dots
(`a.tar.gz` is not `b.gz`) are asked every time.
"""

from __future__ import annotations

import posixpath

from wsgidav import util

_BY_EXTENSION: dict[str, str] = {}


def mime_type(path: str, config: dict) -> str:
    name = posixpath.basename(path)
    if name.count(".") > 1:
        return util.guess_mime_type(path, config)
    extension = posixpath.splitext(name)[1]
    found = _BY_EXTENSION.get(extension)
    if found is None:
        found = _BY_EXTENSION[extension] = util.guess_mime_type(path, config)
    return found
