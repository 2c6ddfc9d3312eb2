"""Settings are declared once: config.yaml is written from the settings table, and the engine's
settings are built from the same keys, so no default, help text or key is kept twice."""

from __future__ import annotations

import ipaddress

import pytest
import yaml

from engine.engine_settings import EngineSettings, from_keys, keys_of
from server.config_template import render
from server.settings import SETTINGS, Setting, load_config
from tests.server_process import REPO

ENGINE_KEYS = {setting.key for setting in SETTINGS if setting.key.startswith("engine.")}

# A value other than the default for every engine key, and what the engine should get from it.
NON_DEFAULTS = {
    "engine.workers": (7, 7),
    "engine.per_user": (3, 3),
    "engine.allow_private_networks": (True, True),
    "engine.private_allowlist": (["10.0.5.7", "10.1.0.0/16"],
                                 (ipaddress.ip_network("10.0.5.7/32"), ipaddress.ip_network("10.1.0.0/16"))),
    "engine.retry.initial": (2, 2.0),
    "engine.retry.max_wait": (400, 400.0),
    "engine.retry.give_up_after": (120, 120.0),
    "engine.connections_per_task": (8, 8),
    "engine.rate_limit": ("10M", 10 * 2**20),
    "engine.per_user_rate_limit": ("512K", 512 * 2**10),
    "engine.connect_timeout": (5, 5.0),
    "engine.read_timeout": (9.5, 9.5),
    "engine.mirrors": (["https://m.example/{sha256}"], ("https://m.example/{sha256}",)),
    "engine.cache_ttl": (60, 60.0),
    "engine.trigger_linger": (1, 1.0),
    "engine.lease": (12, 12.0),
    "engine.torrent.port": (0, 0),
    "engine.torrent.dht": (False, False),
    "engine.torrent.seed_ratio": (1.5, 1.5),
    "engine.torrent.seed_time": (90, 90.0),
    "engine.torrent.metadata_timeout": (30, 30.0),
    "engine.torrent.stall_timeout": (45, 45.0),
}


def test_config_yaml_is_the_file_written_from_the_settings_table():
    committed = (REPO / "config.yaml").read_text(encoding="utf-8")
    assert committed == render(), "config.yaml is stale: run `python -m server.config_template > config.yaml`"


def test_config_yaml_holds_every_default_and_help_text():
    text = (REPO / "config.yaml").read_text(encoding="utf-8")
    comments = " ".join(line.strip().removeprefix("#: ") for line in text.splitlines() if line.strip().startswith("#: "))
    loaded = load_config(REPO / "config.yaml")
    for setting in SETTINGS:
        assert setting.help.strip(), f"{setting.key} has no help text"
        assert setting.help in comments, f"{setting.key}'s help is not config.yaml's comment"
        assert loaded[setting.key] == setting.parse(setting.default), f"{setting.key} differs from its default"


def _as_is(value: object) -> object:
    return value


def test_the_template_nests_sections_and_wraps_long_help():
    table = (
        Setting("a.first", 1, _as_is, "First."),
        Setting("b", "none", _as_is, "Word " * 30),
        Setting("a.inner.deep", None, _as_is, "Deep."),
        Setting("a.last", [], _as_is, "Last."),
    )
    text = render(table)
    body = text.split("\n\n", 1)[1]
    assert body.splitlines()[:7] == [
        "a:", "  #: First.", "  first: 1", "  inner:", "    #: Deep.", "    deep: null", "  #: Last.",
    ]
    assert all(len(line) <= 100 for line in text.splitlines())
    assert yaml.safe_load(text) == {"a": {"first": 1, "inner": {"deep": None}, "last": []}, "b": "none"}


def test_every_engine_key_reaches_the_engine_settings_and_nothing_else():
    assert keys_of(EngineSettings) == ENGINE_KEYS == NON_DEFAULTS.keys()


def _field(settings: EngineSettings, key: str) -> object:
    for name in key.split(".")[1:]:
        settings = getattr(settings, name)
    return settings


@pytest.mark.parametrize("key", sorted(NON_DEFAULTS))
def test_an_engine_key_set_in_the_config_is_what_the_engine_gets(key):
    written, expected = NON_DEFAULTS[key]
    settings = from_keys(EngineSettings, load_config(None, {key: written}).values)
    defaults = from_keys(EngineSettings, load_config(None).values)
    assert _field(settings, key) == expected != _field(defaults, key)
    for other in ENGINE_KEYS - {key}:
        assert _field(settings, other) == _field(defaults, other), other
