"""The engine's settings as one frozen dataclass, built from the parsed `engine.*` keys.

Defaults live only in the settings table (server/settings.py); these classes take every value.
`from_keys` maps a field to the key of the same name under its prefix, and a nested dataclass
field to a section (`retry` to `engine.retry.*`, `torrent` to `engine.torrent.*`), so a new
setting is one row in the table and one field here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Mapping, TypeVar, get_origin, get_type_hints

from engine.addresses import Network
from engine.retry import RetryPolicy
from engine.torrent_client import TorrentSettings

PREFIX = "engine."
T = TypeVar("T")


@dataclass(frozen=True)
class EngineSettings:
    """The `engine.*` keys the engine runs by."""

    workers: int
    per_user: int
    allow_private_networks: bool
    private_allowlist: tuple[Network, ...]
    retry: RetryPolicy
    connections_per_task: int
    rate_limit: int | None
    per_user_rate_limit: int | None
    connect_timeout: float
    read_timeout: float
    mirrors: tuple[str, ...]
    cache_ttl: float
    torrent: TorrentSettings
    trigger_linger: float
    lease: float


def from_keys(cls: type[T], values: Mapping[str, Any], prefix: str = PREFIX) -> T:
    """An instance of the dataclass `cls` from dotted keys: field `name` is `prefix + name`."""
    arguments = {}
    for field, hint in _field_types(cls):
        key = prefix + field
        if is_dataclass(hint):
            arguments[field] = from_keys(hint, values, key + ".")
        elif get_origin(hint) is tuple:
            # Frozen settings hold tuples; YAML gives lists.
            arguments[field] = tuple(values[key])
        else:
            arguments[field] = values[key]
    return cls(**arguments)


def keys_of(cls: type, prefix: str = PREFIX) -> set[str]:
    """Every dotted key `from_keys` reads for `cls`."""
    keys = set()
    for field, hint in _field_types(cls):
        key = prefix + field
        keys |= keys_of(hint, key + ".") if is_dataclass(hint) else {key}
    return keys


def _field_types(cls: type) -> list[tuple[str, Any]]:
    hints = get_type_hints(cls)
    return [(field.name, hints[field.name]) for field in fields(cls)]
