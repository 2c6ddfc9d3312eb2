"""The adversarial suite's tally of what it tried; tests/conftest.py prints it at the end of the run."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.conftest import TALLY


@pytest.fixture
def tally() -> Counter:
    return TALLY
