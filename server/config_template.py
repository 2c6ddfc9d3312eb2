"""Writes config.yaml from the settings table: every key at its default, under a `#:` comment
that is the key's help text, so the documented file and the table cannot drift apart.

After changing `SETTINGS`, run `python -m server.config_template > config.yaml`; a test checks
that the committed file is this output.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Iterable

import yaml

from server.settings import SETTINGS, Setting

HEADER = """\
# fetchdrive configuration. Every key is optional; the values below are the defaults.
# Sizes take 500M, 10G, 1.5T, plain bytes or none (K/M/G/T are powers of 1024).
# Durations are seconds. Start with: fetchdrive --config config.yaml serve
"""
WIDTH = 100
INDENT = "  "

# A section maps names to its keys' settings and to its subsections, in the table's order.
Section = dict[str, "Setting | Section"]


def render(settings: Iterable[Setting] = SETTINGS) -> str:
    """The text of config.yaml for `settings`."""
    tree: Section = {}
    for setting in settings:
        *sections, name = setting.key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = setting
    lines = HEADER.splitlines()
    for name, entry in tree.items():
        lines.append("")
        _emit(name, entry, 0, lines)
    return "\n".join(lines) + "\n"


def _emit(name: str, entry: Setting | Section, depth: int, lines: list[str]) -> None:
    indent = INDENT * depth
    if isinstance(entry, Setting):
        wrapped = textwrap.wrap(entry.help, WIDTH - len(indent) - 3, break_long_words=False, break_on_hyphens=False)
        lines.extend(f"{indent}#: {line}" for line in wrapped)
        lines.append(f"{indent}{name}: {_yaml_value(entry.default)}")
        return
    lines.append(f"{indent}{name}:")
    for child, value in entry.items():
        _emit(child, value, depth + 1, lines)


def _yaml_value(value: object) -> str:
    # safe_dump ends a lone scalar with a document-end marker.
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


if __name__ == "__main__":
    sys.stdout.write(render())
