"""Sources fetchdrive does not download (SPEC 4: only http, https and magnet:) are refused when
the trigger is read, with a clear reason, by every way in: trigger file, API and `fetchdrive add`
(tests/test_client_commands.py). Magnet links are downloaded (tests/test_torrents.py), except
behind a catalog ID, whose task fails with a reason that says what to do instead."""

from __future__ import annotations

import pytest

from tests.downloads_helpers import url_shortcut, wait_for

UNSUPPORTED = [
    "ftp://ftp.example.org/pub/x.iso", "file:///etc/passwd", "gopher://h.example/1", "data:text/plain;base64,aGk=",
    "javascript:alert(1)", "sftp://h.example/x", "mailto:a@example.com",
]
MAGNET = "magnet:?xt=urn:btih:" + "c" * 40 + "&dn=thing.iso"

pytestmark = pytest.mark.shared_server


@pytest.mark.parametrize("url", UNSUPPORTED)
def test_the_api_refuses_an_unsupported_scheme_with_400(server, alice, url):
    response = alice.session.post(server.url("/api/v1/tasks"), json={"url": url})
    assert response.status_code == 400
    message = response.json()["error"] if "json" in response.headers.get("Content-Type", "") else response.text
    assert f"uses {url.split(':', 1)[0]}:" in message and "http://, https:// or magnet:" in message
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []


def test_a_trigger_with_an_unsupported_scheme_gets_an_error_file_and_no_task(server, alice):
    downloads = server.space(alice.name) / "downloads"
    for number, url in enumerate(UNSUPPORTED):
        assert alice.session.put(server.dav(f"downloads/t{number}.url"), data=url_shortcut(url)).status_code < 300
    for number, url in enumerate(UNSUPPORTED):
        error_file = downloads / f"t{number}.url.error.txt"
        reason = wait_for(lambda: error_file.exists() and error_file.read_text(), message=error_file.name)
        assert f"uses {url.split(':', 1)[0]}:" in reason and "http://, https:// or magnet:" in reason
    assert alice.session.get(server.url("/api/v1/tasks")).json() == []


def test_a_catalog_id_for_a_magnet_link_fails_saying_to_drop_the_magnet_link_itself(server, alice):
    assert server.cli("catalog", "add", "linux-iso", MAGNET).returncode == 0
    assert alice.session.post(server.url("/api/v1/tasks"), json={"id": "linux-iso"}).status_code == 201
    task = wait_for(lambda: [t for t in alice.session.get(server.url("/api/v1/tasks")).json() if t["state"] == "failed"],
                    message="the failed task")[0]
    assert "magnet link itself" in task["error"]


@pytest.mark.parametrize("url", UNSUPPORTED[:4])
def test_the_catalog_refuses_an_unsupported_scheme(server, url):
    result = server.cli("catalog", "add", "some-id", url)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"uses {url.split(':', 1)[0]}:" in lines[0], result.stderr
