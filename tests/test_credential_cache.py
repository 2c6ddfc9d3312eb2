"""Remembered logins (provider/credential_cache.py) never outlive a password or a user, and
never let a near miss in."""

from __future__ import annotations

import pytest
import requests

from engine.database import open_database
from provider.accounts import Accounts
from tests.downloads_helpers import wait_for

USERS = {"carol": "carol-password-1", "dave": "dave-password-22", "erin": "erin-password-333"}


def _status(server, user: str, password: str) -> int:
    return requests.request("PROPFIND", server.dav(), auth=(user, password), headers={"Depth": "0"}).status_code


@pytest.fixture
def remembered(server) -> dict[str, str]:
    """Three users, each logged in once, so that every one of them is remembered."""
    for user, password in USERS.items():
        server.add_user(user, password)
        assert _status(server, user, password) == 207
    return dict(USERS)


def test_changes_made_by_another_process_end_only_that_users_remembered_login(server, remembered):
    # Each step runs `fetchdrive user ...` as its own process, as an administrator would.
    steps = [
        (("user", "passwd", "dave", "--password-stdin"), "dave", "dave-new-password"),
        (("user", "remove", "erin"), "erin", None),
        (("user", "passwd", "carol", "--password-stdin"), "carol", "carol-new-password"),
    ]
    for command, user, new_password in steps:
        result = server.cli(*command, input=f"{new_password}\n" if new_password else None)
        assert result.returncode == 0, result.stderr
        assert _status(server, user, remembered[user]) == 401
        if new_password:
            remembered[user] = new_password
            assert _status(server, user, new_password) == 207
        else:
            del remembered[user]
        for other, password in remembered.items():
            assert _status(server, other, password) == 207, other


# At most four per user: the fifth wrong password in a row would lock the user out.
NEAR_MISSES = [
    ("carol", "carol-password-"),  # a prefix of the remembered one
    ("carol", "carol-password-1x"),  # longer
    ("carol", "Carol-password-1"),  # another case
    ("carol", ""),
    ("dave", USERS["carol"]),  # someone else's
    ("dave", "dave-password-2"),
    ("erin", "erin-password-333 "),
    ("erin\0carol", "carol-password-1"),  # the pair's separator inside the name
]


def test_near_misses_of_a_remembered_login_are_refused(server, remembered):
    for user, password in NEAR_MISSES:
        assert _status(server, user, password) == 401, (user, password)
    for user, password in USERS.items():
        assert _status(server, user, password) == 207


@pytest.mark.parametrize("change", ["passwd", "remove"])
def test_a_change_on_a_node_of_another_machine_ends_a_remembered_login_within_seconds(tmp_path, postgres_url, change):
    """Two machines' nodes share the database but not a mapped file (a network filesystem does
    not carry one machine's writes into another's mapping): each Accounts here has a data
    folder of its own, so only the database can tell node B what node A changed."""
    for machine in ("a", "b"):
        (tmp_path / machine).mkdir()
    node_a = Accounts(open_database(postgres_url, tmp_path / "a"), tmp_path / "a")
    node_b = Accounts(open_database(postgres_url, tmp_path / "b"), tmp_path / "b")
    node_a.add("frank", "frank-password-1", None)
    assert node_b.verify("frank", "frank-password-1") and node_b.verified_before("frank", "frank-password-1")
    if change == "passwd":
        node_a.set_password("frank", "frank-password-2")
    else:
        node_a.remove("frank")
    wait_for(lambda: not node_b.verified_before("frank", "frank-password-1"), timeout=5,
             message="node B forgetting the old login")
    assert not node_b.verify("frank", "frank-password-1")
    assert node_b.verify("frank", "frank-password-2") is (change == "passwd")
