"""Authentication of the drive: the challenge, wrong passwords, throttling, the first admin."""

from __future__ import annotations

import pytest
import requests

from tests.server_process import ADMIN_PASSWORD

pytestmark = pytest.mark.shared_server


def test_unauthenticated_request_gets_a_basic_challenge(server):
    response = requests.request("PROPFIND", server.dav(), headers={"Depth": "0"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="fetchdrive"')


def test_first_start_creates_admin_with_the_password_from_the_environment(server, admin):
    assert admin.session.request("PROPFIND", server.dav(), headers={"Depth": "0"}).status_code == 207
    assert "added user admin" in server.log_text()
    assert ADMIN_PASSWORD not in server.log_text()


def test_wrong_password_and_unknown_user_are_refused(server, alice):
    assert requests.get(server.dav(), auth=(alice.name, "not-her-password")).status_code == 401
    assert requests.get(server.dav(), auth=("nobody", "whatever-password")).status_code == 401


def test_repeated_wrong_passwords_lock_out_even_the_right_one_for_a_while_and_say_so(server, alice):
    for _ in range(5):
        assert requests.get(server.dav(), auth=(alice.name, "guess-guess")).status_code == 401
    locked = requests.get(server.dav(), auth=(alice.name, alice.password))
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["Retry-After"]) <= 300
    assert "too many wrong passwords" in locked.text and "wrong user name or password" not in locked.text


def test_passwords_and_authorization_headers_never_reach_the_log(server, alice):
    alice.session.put(server.dav("note.txt"), data=b"hello")
    requests.get(server.dav(), auth=(alice.name, "wrong-secret-xyz"))
    log = server.log_text()
    assert alice.password not in log
    assert "wrong-secret-xyz" not in log
    assert "Authorization" not in log and "Basic " not in log


def test_password_change_takes_effect_at_once(server, alice):
    assert alice.session.get(server.dav()).status_code == 200
    result = server.cli("user", "passwd", alice.name, "--password-stdin", input="a-new-password\n")
    assert result.returncode == 0, result.stderr
    assert alice.session.get(server.dav()).status_code == 401
    assert requests.get(server.dav(), auth=(alice.name, "a-new-password")).status_code == 200
