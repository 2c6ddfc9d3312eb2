"""The adversarial suite's tally: what it tried, printed at the end of the run."""

from __future__ import annotations

from collections import Counter

import pytest

TALLY: Counter = Counter()


@pytest.fixture
def tally() -> Counter:
    return TALLY


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TALLY:
        return
    failures = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    terminalreporter.section("adversarial summary")
    for name in ("requests made", "files checked", "crashes survived", "hostile inputs tried", "downloads delivered"):
        terminalreporter.write_line(f"{name:22s} {TALLY[name]}")
    terminalreporter.write_line(f"{'failures':22s} {failures}")
