"""What a `.torrent` file or a `magnet:` URI asks for, checked as hostile input (SPEC 4b).

libtorrent parses the bencoding under limits (nesting depth, tokens, pieces, size), so a
nesting bomb or a torrent of millions of pieces is refused before anything is allocated.
libtorrent would quietly rewrite a file name such as `..` or `/etc`; a torrent that names
one is refused instead, since no honest torrent does. Every name must also survive
`sanitize_filename` unchanged in meaning: it cannot leave the folder, imitate a placeholder,
or carry invisible controls.
"""

from __future__ import annotations

from dataclasses import dataclass

import libtorrent as lt

from engine.naming import sanitize_filename

MAX_METAINFO_BYTES = 16 * 1024 * 1024
MAX_FILES = 10_000
LIMITS = {"max_buffer_size": MAX_METAINFO_BYTES, "max_pieces": 4_000_000,
           "max_decode_depth": 64, "max_decode_tokens": 4_000_000}
_BAD_PARTS = {b"", b".", b".."}


class MetainfoError(ValueError):
    """A torrent or magnet that cannot be used; str(e) is one human-readable sentence."""


@dataclass(frozen=True)
class TorrentFile:
    index: int  # libtorrent's file index
    disk_path: str  # where libtorrent saves it, below the save path
    path: tuple[str, ...]  # where it is delivered, below the torrent's folder: each part sanitised
    size: int


@dataclass(frozen=True)
class Metainfo:
    info_hash: str  # hex; v1, else the truncated v2 hash libtorrent uses for v2-only torrents
    name: str
    files: tuple[TorrentFile, ...]
    total_size: int
    multi_file: bool


def _info_hash(hashes: lt.info_hash_t) -> str:
    return str(hashes.v1) if hashes.has_v1() else str(hashes.get_best())[:40]


def _check_raw_name(raw: object) -> None:
    if not isinstance(raw, bytes) or raw in _BAD_PARTS or b"/" in raw or b"\\" in raw or b"\x00" in raw:
        shown = raw.decode("utf-8", "replace")[:60] if isinstance(raw, bytes) else repr(raw)[:60]
        raise MetainfoError(f"the torrent names a file {shown!r} that could leave its folder; it was refused")


def parse_metainfo(data: bytes) -> tuple[Metainfo, lt.torrent_info]:
    """Check a .torrent file's bytes; raises MetainfoError with the reason."""
    if len(data) > MAX_METAINFO_BYTES:
        raise MetainfoError(f"the torrent file is larger than {MAX_METAINFO_BYTES // (1024 * 1024)} MiB")
    try:
        info = lt.torrent_info(data, LIMITS)
    except RuntimeError as error:
        reason = str(error).split(" [", 1)[0]
        raise MetainfoError(f"the file is not a valid torrent: {reason}") from None
    return describe(info), info


def describe(info: lt.torrent_info) -> Metainfo:
    """The checked description of metainfo libtorrent parsed (from a file or from the swarm).
    Web seeds are dropped: they would be HTTP fetches outside the engine's address checks."""
    info.set_web_seeds([])
    raw = lt.bdecode(info.info_section())
    if not isinstance(raw, dict):
        raise MetainfoError("the torrent's info section is not a dictionary")
    _check_raw_name(raw.get(b"name"))
    listed = raw.get(b"files") or []
    if len(listed) > MAX_FILES or info.num_files() > MAX_FILES:
        raise MetainfoError(f"the torrent lists {max(len(listed), info.num_files())} files; at most {MAX_FILES} are accepted")
    for entry in listed:
        parts = entry.get(b"path.utf-8") or entry.get(b"path") if isinstance(entry, dict) else None
        if not parts or not isinstance(parts, list):
            raise MetainfoError("the torrent lists a file without a path")
        for part in parts:
            _check_raw_name(part)
    layout = info.files()
    files = []
    for index in range(layout.num_files()):
        flags = layout.file_flags(index)
        if flags & lt.file_storage.flag_symlink:
            raise MetainfoError("the torrent holds a symbolic link; such torrents are refused")
        if flags & lt.file_storage.flag_pad_file:
            continue
        disk_path = layout.file_path(index)
        parts = disk_path.split("/")[1:] if listed else [disk_path]
        files.append(TorrentFile(index, disk_path, tuple(sanitize_filename(part) for part in parts), layout.file_size(index)))
    return Metainfo(_info_hash(info.info_hashes()), sanitize_filename(info.name()), tuple(files), info.total_size(), bool(listed))


def parse_magnet(uri: str) -> lt.add_torrent_params:
    """libtorrent's parameters for a magnet URI; raises MetainfoError if it names no torrent."""
    try:
        params = lt.parse_magnet_uri(uri)
    except RuntimeError as error:
        raise MetainfoError(f"the magnet link is not valid: {str(error).split(' [', 1)[0]}") from None
    return params


def make_magnet(info: lt.torrent_info) -> str:
    return lt.make_magnet_uri(info)


def magnet_info_hash(uri: str) -> str:
    return _info_hash(parse_magnet(uri).info_hashes)
