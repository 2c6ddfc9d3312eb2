"""WebDAV error answers are one short line of plain text: no HTML page, no WsgiDAV banner."""

from __future__ import annotations

import requests


def test_dav_errors_are_one_line_of_plain_text(server, alice):
    anonymous = requests.Session()
    anonymous.trust_env = False
    cases = [
        (alice.session, "GET", "nothing.txt", {}, None, 404, "nothing.txt"),
        (alice.session, "MKCOL", "a/b/c/", {}, None, 409, "existing collection"),
        (alice.session, "DELETE", "downloads/", {}, None, 403, "downloads"),
        (alice.session, "PUT", "big.bin", {}, b"x" * (11 * 1024 * 1024), 507, "quota"),
        (alice.session, "MOVE", "nothing.txt", {"Destination": server.dav("b.txt")}, None, 404, "nothing.txt"),
        (anonymous, "PROPFIND", "", {}, None, 401, "authentication required"),
    ]
    for session, method, path, headers, body, status, reason in cases:
        answer = session.request(method, server.dav(path), headers=headers, data=body)
        assert answer.status_code == status, (method, path, answer.status_code, answer.text)
        assert answer.headers["Content-Type"].startswith("text/plain"), (method, path, answer.headers)
        text = answer.text
        assert text.count("\n") == 1 and "<" not in text and "WsgiDAV" not in text, (method, path, text)
        assert reason.lower() in text.lower(), (method, path, text)
        assert "WsgiDAV" not in answer.headers.get("Server", "")
    assert not (server.space("alice") / "big.bin").exists()
