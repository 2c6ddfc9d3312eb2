"""The PROPFIND fast path answers exactly what WsgiDAV's general handling answers.

One tree (odd names, nested folders, dead properties, empty files) is asked the same
PROPFINDs with `server.fast_propfind` on and then off; the parsed answers must be equal.
"""

from __future__ import annotations

import yaml
from lxml import etree

ALLPROP = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>'
SOME_PROPS = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getcontentlength/><D:getetag/>'
              b"<D:resourcetype/><D:quota-used-bytes/><D:quota-available-bytes/><D:getcontenttype/><D:displayname/></D:prop></D:propfind>")
DEAD_PROP = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:prop>'
             b"<Z:Win32LastAccessTime/><D:getetag/></D:prop></D:propfind>")
PROPPATCH = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:schemas-microsoft-com:"><D:set><D:prop>'
             b"<Z:Win32LastAccessTime>Tue, 24 Nov 2026 10:00:00 GMT</Z:Win32LastAccessTime></D:prop></D:set></D:propertyupdate>")
NAMES = ["plain.txt", "with space & amp.txt", "ünïcode €.pdf", "(parens) 'quote'.jpg", "no-extension", "empty.bin",
         "archive.tar.gz", "single.gz", "README.MD", ".hidden"]


def _canonical(xml: bytes) -> dict:
    """href -> {status -> {property tag -> canonical value}}, ignoring order and prefixes."""
    answer: dict = {}
    for response in etree.fromstring(xml).iter("{DAV:}response"):
        href = response.findtext("{DAV:}href")
        statuses = answer.setdefault(href, {})
        for propstat in response.iter("{DAV:}propstat"):
            status = propstat.findtext("{DAV:}status")
            for prop in propstat.find("{DAV:}prop"):
                if prop.tag == "{DAV:}quota-available-bytes" and prop.text:
                    prop.text = "free disk space, which moves"
                statuses.setdefault(status, {})[prop.tag] = etree.tostring(prop, method="c14n")
    return answer


def _ask(server) -> list[tuple]:
    answers = []
    for user, password in (("alice", "alice-password"), ("free", "free-password")):  # free: no quota
        session = server.session(user, password)
        for path in ("", "docs/", "docs/sub/", "docs/plain.txt", "downloads/"):
            for depth in ("0", "1"):
                for body in (b"", ALLPROP, SOME_PROPS, DEAD_PROP):
                    response = session.request("PROPFIND", server.dav(path), data=body, headers={"Depth": depth})
                    multistatus = _canonical(response.content) if response.status_code == 207 else {}
                    answers.append((user, path, depth, body[-40:], response.status_code, multistatus))
    return answers


def test_fast_path_answers_as_wsgidav_does(server, alice):
    session = alice.session
    server.add_user("free", "free-password", quota="none")
    for folder in ("docs", "docs/sub", "docs/sub/deeper"):
        assert session.request("MKCOL", server.dav(folder)).status_code == 201
    for name in NAMES:
        session.put(server.dav(f"docs/{name}"), data=b"" if name == "empty.bin" else name.encode() * 10)
        session.put(server.dav(f"docs/sub/{name}"), data=b"x")
    for path in ("docs/plain.txt", "docs/sub/", "docs/ünïcode €.pdf"):
        assert session.request("PROPPATCH", server.dav(path), data=PROPPATCH).status_code == 207

    fast = _ask(server)
    config = yaml.safe_load(server.config_path.read_text())
    config["server"]["fast_propfind"] = False
    server.config_path.write_text(yaml.safe_dump(config))
    server.restart()
    general = _ask(server)

    assert len(fast) == len(general)
    for fast_answer, general_answer in zip(fast, general):
        assert fast_answer == general_answer
    assert any(b"Win32LastAccessTime" in value for *_, answer in fast
               for statuses in answer.values() for props in statuses.values() for value in props.values())


def test_locks_send_propfind_the_general_way(server, alice):
    """While the user holds a lock, lockdiscovery must show it: the fast path steps aside."""
    alice.session.put(server.dav("locked.txt"), data=b"x")
    body = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
            "<D:locktype><D:write/></D:locktype></D:lockinfo>")
    token = alice.session.request("LOCK", server.dav("locked.txt"), data=body).headers["Lock-Token"]
    listing = alice.session.request("PROPFIND", server.dav(""), headers={"Depth": "1"}).text
    assert token.strip("<>") in listing


def test_a_long_listing_is_sent_in_pieces_with_the_same_entries(server, alice):
    """More than STREAM_FROM entries: chunked, without a Content-Length, and still WsgiDAV's answer."""
    folder = server.space("alice") / "many"
    folder.mkdir()
    for number in range(2_001):
        (folder / f"entry {number:05} ü.txt").write_bytes(b"x" * (number % 7))
    answers = []
    for fast in (True, False):
        config = yaml.safe_load(server.config_path.read_text())
        config["server"]["fast_propfind"] = fast
        server.config_path.write_text(yaml.safe_dump(config))
        server.restart()  # the first also counts the files written beside the server into the quota
        response = alice.session.request("PROPFIND", server.dav("many/"), data=ALLPROP, headers={"Depth": "1"})
        assert response.status_code == 207
        answers.append((response.headers, _canonical(response.content)))
    (fast_headers, fast_answer), (_, general_answer) = answers
    assert fast_headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in fast_headers
    assert len(fast_answer) == 2_002
    assert fast_answer == general_answer
