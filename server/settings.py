"""The settings table: every `config.yaml` key with its default, type and meaning.

Validation, defaults and config.yaml (written by server/config_template.py, each key under its
help text) all follow from `SETTINGS`; the engine's settings take the `engine.*` keys by field
name (engine/engine_settings.py). `load_config` reads a YAML file, rejects unknown keys and
bad values with one line naming the key, and returns a `Config` whose values are already
parsed (sizes in bytes, paths absolute).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from server.sizes import SizeError, parse_size


class ConfigError(Exception):
    """A configuration problem; str(e) is one line naming the key and the fix."""


def _integer(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be a whole number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ValueError(f"must be at least {minimum}{upper}, got {value}")
        return value

    return check


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _ratio(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"must be a number of at least 0, got {value!r}")
    return float(value)


def _size(value: Any) -> int | None:
    try:
        return parse_size(value)
    except SizeError as error:
        raise ValueError(str(error)) from None


def _count(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() == "none":
        return None
    return _integer(1)(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _networks(value: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if not isinstance(value, list):
        raise ValueError("must be a list of addresses or networks such as 10.0.5.7 or 10.1.0.0/16")
    try:
        return [ipaddress.ip_network(str(item), strict=False) for item in value]
    except ValueError as error:
        raise ValueError(f"{error}; use addresses or networks such as 10.0.5.7 or 10.1.0.0/16") from None


def _mirrors(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError("must be a list of URL templates such as https://m.example/{sha256}")
    for template in value:
        if "{sha256}" not in template or not re.match(r"^https?://", template):
            raise ValueError(f"{template!r} must be an http(s) URL containing {{sha256}}")
    return value


def _catalog(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ValueError("must be a list of entries with id, url and optional sha256, filename")
    entries = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not {"id", "url"} <= entry.keys():
            raise ValueError(f"entry {index + 1} needs at least `id` and `url`")
        unknown = entry.keys() - {"id", "url", "sha256", "filename"}
        if unknown:
            raise ValueError(f"entry {index + 1} has unknown key(s) {', '.join(sorted(unknown))}")
        entries.append({key: str(val) for key, val in entry.items()})
    return entries


@dataclass(frozen=True)
class Setting:
    """One configuration key: dotted name, default (as written in YAML), parser, meaning."""

    key: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("server.host", "127.0.0.1", _text, "Address to listen on; 0.0.0.0 for every interface (use HTTPS beyond localhost)."),
    Setting("server.port", 8080, _integer(0, 65535), "TCP port to listen on (0 picks a free one)."),
    Setting("server.tls.cert", None, _optional_text, "PEM certificate; with server.tls.key set, serve HTTPS."),
    Setting("server.tls.key", None, _optional_text, "PEM private key for server.tls.cert."),
    Setting("server.threads", 50, _integer(1, 1000), "HTTP worker threads (Windows Explorer opens many connections)."),
    Setting("server.max_threads", 1000, _integer(1, 10000),
            "Most HTTP worker threads; the pool grows to this while every thread is busy "
            "(clients trickling request heads each hold one until server.header_timeout)."),
    Setting("server.timeout", 300, _seconds, "Socket time-out in seconds; long enough for slow uploads."),
    Setting("server.header_timeout", 30, _seconds, "Seconds a client may take to send a request's head before it is cut off."),
    Setting("server.fast_propfind", True, _flag,
            "Answer plain Depth 0/1 PROPFINDs without WsgiDAV's generic machinery "
            "(same answers, several times faster; false only to compare or debug)."),
    Setting("server.node", None, _optional_text,
            "This node's name among several sharing one database (unset: the machine's host name); unique per node."),
    Setting("server.fast_get", True, _flag, "Answer plain GET/HEAD of files without WsgiDAV's generic machinery (off: to compare)."),
    Setting("storage.root", "./data", _text, "Data folder: database, user spaces, temporary area (relative to the config file)."),
    Setting("database.url", "sqlite:", _text,
            "sqlite: (embedded, in storage.root) or postgresql://user:password@host/db, shared by several nodes."),
    Setting("storage.default_quota", "10G", _size, "Quota of a new user: 500M, 10G, 1.5T, bytes, or none."),
    Setting("storage.min_free", "1G", _size, "Free disk below which uploads get 507 and downloads pause."),
    Setting("storage.max_files", 1_000_000, _count, "Files and folders one user may have; more get 507 (none: no limit)."),
    Setting("storage.max_property_bytes", "64K", _size,
            "Largest dead property (name and value) a client may store with PROPPATCH; every property counts in the quota."),
    Setting("storage.max_lock_owner_bytes", "4K", _size, "Largest lock owner a client may send with a LOCK; a longer one gets 400."),
    Setting("storage.max_locks", 10_000, _count, "Locks one user may hold at once; more get 507 (none: no limit)."),
    Setting("engine.workers", 4, _integer(1, 256), "Downloads that run at once on this node (each node sharing the database has this many workers)."),
    Setting("engine.per_user", 2, _integer(1, 256), "Downloads that run at once for one user, counted over all nodes."),
    Setting("engine.allow_private_networks", False, _flag, "May the server fetch from loopback, private and link-local addresses."),
    Setting("engine.private_allowlist", [], _networks, "Private addresses or networks fetched even so, e.g. [10.0.5.7, 10.1.0.0/16]."),
    Setting("engine.retry.initial", 1, _seconds, "First back-off between tries, in seconds."),
    Setting("engine.retry.max_wait", 300, _seconds, "Longest back-off between tries, in seconds."),
    Setting("engine.retry.give_up_after", 86400, _seconds, "Seconds of failing tries before a task fails (waits for the server's own disk do not count)."),
    Setting("engine.connections_per_task", 4, _integer(1, 32), "Parallel ranges for one large download (1 disables)."),
    Setting("engine.rate_limit", "none", _size, "Download bandwidth cap per second for the whole drive (10M = 10 MiB/s), or none; each node alive takes an equal share."),
    Setting("engine.per_user_rate_limit", "none", _size, "Download bandwidth cap per second for each user, or none; each node alive takes an equal share."),
    Setting("engine.connect_timeout", 15, _seconds, "Seconds to wait for an origin to accept a connection."),
    Setting("engine.read_timeout", 60, _seconds, "Seconds an origin may stay silent mid-download before the try counts as failed."),
    Setting("engine.mirrors", [], _mirrors, "URL templates tried for sha256: IDs, e.g. https://m.example/{sha256}."),
    Setting("engine.cache_ttl", 86400, _seconds, "Seconds a finished URL may be delivered again without a transfer."),
    Setting("engine.trigger_linger", 30, _seconds,
            "Seconds the trigger of a finished download stays beside the file before it is removed "
            "(clients such as rclone read their upload back)."),
    Setting("engine.lease", 30, _seconds,
            "Seconds after which another node takes over the tasks of a node that stopped answering."),
    Setting("engine.torrent.port", 6881, _integer(0, 65535), "BitTorrent listen port (0 = any free port)."),
    Setting("engine.torrent.dht", True, _flag, "Use the DHT to find peers."),
    Setting("engine.torrent.seed_ratio", 0, _ratio, "Keep seeding until this upload/download ratio (0 = stop when complete)."),
    Setting("engine.torrent.seed_time", 0, _ratio, "Keep seeding for these seconds (0 = stop when complete)."),
    Setting("engine.torrent.metadata_timeout", 600, _seconds, "Seconds a magnet link may wait for its metadata before the task fails."),
    Setting("engine.torrent.stall_timeout", 3600, _seconds, "Seconds a torrent may go without any peer before the task fails."),
    Setting("events.keepalive", 15, _seconds, "Seconds between keep-alive comments on an idle /api/v1/events stream."),
    Setting("events.history", 1000, _integer(10), "Events kept per user for clients that resume with Last-Event-ID; one further behind resyncs."),
    Setting("events.max_streams_per_user", 20, _integer(1), "Event streams one user may hold open at once (each holds an HTTP worker thread)."),
    Setting("catalog", [], _catalog,
            "Content IDs and their sources: a list of {id, url, sha256?, filename?}, "
            "e.g. [{id: debian-12, url: https://cdimage.example/debian-12.iso}]."),
)

_BY_KEY = {setting.key: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Parsed settings by dotted key, plus where they came from."""

    values: dict[str, Any]
    base_dir: Path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def storage_root(self) -> Path:
        return (self.base_dir / self.values["storage.root"]).resolve()

    def path(self, key: str) -> Path | None:
        """A file-valued setting resolved against the config file's folder."""
        value = self.values[key]
        return None if value is None else (self.base_dir / value).resolve()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {type(tree).__name__}")
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if key in _BY_KEY:
            flat[key] = value
        elif isinstance(value, dict) and any(known.startswith(key + ".") for known in _BY_KEY):
            flat.update(_flatten(value, key + "."))
        elif value is None and any(known.startswith(key + ".") for known in _BY_KEY):
            continue  # an empty section such as `tls:` with every key commented out
        else:
            raise ConfigError(f"{key}: unknown configuration key; see config.yaml for the keys that exist")
    return flat


def load_config(path: str | os.PathLike[str] | None, overrides: dict[str, Any] | None = None) -> Config:
    """Read `path` (None or missing default file: defaults only) and validate every key."""
    raw: dict[str, Any] = {}
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        base_dir = file.resolve().parent
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{file}: config file not found; pass --config FILE or create it") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{file}: cannot read config file ({error})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{file}: not valid YAML{where}; check the indentation and quoting") from None
        raw = _flatten(loaded) if loaded is not None else {}
    raw.update(overrides or {})
    values = {}
    for setting in SETTINGS:
        value = raw.get(setting.key, setting.default)
        try:
            values[setting.key] = setting.parse(value)
        except ValueError as error:
            raise ConfigError(f"{setting.key}: {error}") from None
    if (values["server.tls.cert"] is None) != (values["server.tls.key"] is None):
        raise ConfigError("server.tls: set both cert and key for HTTPS, or neither for HTTP")
    if values["server.max_threads"] < values["server.threads"]:
        raise ConfigError("server.max_threads: must not be smaller than server.threads")
    if values["engine.retry.max_wait"] < values["engine.retry.initial"]:
        raise ConfigError("engine.retry.max_wait: must not be smaller than engine.retry.initial")
    return Config(values, base_dir)
