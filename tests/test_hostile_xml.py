"""XML bombs and external entities in PROPFIND, PROPPATCH and LOCK bodies are refused or
inert: no expansion, no file read, no 5xx, and the server keeps serving."""

from __future__ import annotations

import time

import pytest

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz ['
    '<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    '<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
    '<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
    '<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
    '<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
    '<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">'
    ']>{body}'
)
pytestmark = pytest.mark.shared_server

EXTERNAL = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>{body}'

BODIES = {
    "PROPFIND": '<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>{entity}</D:displayname></D:prop></D:propfind>',
    "PROPPATCH": '<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:z"><D:set><D:prop><Z:x>{entity}</Z:x></D:prop></D:set></D:propertyupdate>',
    "LOCK": '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>{entity}</D:owner></D:lockinfo>',
}


@pytest.mark.parametrize("method", sorted(BODIES))
@pytest.mark.parametrize("template, entity", [(BILLION_LAUGHS, "&lol9;"), (EXTERNAL, "&xxe;")])
def test_xml_bombs_and_external_entities_are_inert(server, alice, method, template, entity):
    alice.session.put(server.dav("target.txt"), data=b"x")
    body = template.format(body=BODIES[method].format(entity=entity))
    began = time.monotonic()
    response = alice.session.request(method, server.dav("target.txt"), data=body.encode(),
                                     headers={"Content-Type": "application/xml", "Depth": "0"})
    assert time.monotonic() - began < 5
    assert response.status_code < 500
    assert "root:" not in response.text and "lollollol" not in response.text
    assert len(response.content) < 100_000
    query = '<D:propfind xmlns:D="DAV:"><D:prop><Z:x xmlns:Z="urn:z"/></D:prop></D:propfind>'
    stored = alice.session.request("PROPFIND", server.dav("target.txt"), data=query, headers={"Depth": "0"}).text
    assert "root:" not in stored and "lollollol" not in stored
    assert alice.session.get(server.dav("target.txt")).status_code == 200


def test_a_chunked_propfind_body_is_read(server, alice):
    body = b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:quota-used-bytes/></D:prop></D:propfind>'
    response = alice.session.request("PROPFIND", server.dav(), data=iter([body[:30], body[30:]]), headers={"Depth": "0"})
    assert response.status_code == 207 and "quota-used-bytes" in response.text


def test_an_oversized_xml_body_gets_413(server, alice):
    body = b'<D:propfind xmlns:D="DAV:"><D:prop>' + b"<D:displayname/>" * 100_000 + b"</D:prop></D:propfind>"
    response = alice.session.request("PROPFIND", server.dav(), data=body, headers={"Depth": "0"})
    assert response.status_code == 413
    assert alice.session.get(server.dav()).status_code == 200


def test_a_get_or_head_with_a_body_gets_415_not_a_server_error(server, alice):
    """Found by the fuzz test: WsgiDAV's refusal of a GET with a body on a folder was a 500."""
    alice.session.request("MKCOL", server.dav("folder"))
    alice.session.put(server.dav("file.txt"), data=b"x")
    for method in ("GET", "HEAD"):
        for path in ("folder", "file.txt", ""):
            response = alice.session.request(method, server.dav(path), data=b"\0")
            assert response.status_code == 415, (method, path)
    assert alice.session.get(server.dav("file.txt")).content == b"x"
