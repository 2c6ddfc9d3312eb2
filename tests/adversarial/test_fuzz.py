"""Property-based hostile input: API JSON and WebDAV paths and headers never cause a 5xx."""

from __future__ import annotations

import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
API_OBJECTS = st.fixed_dictionaries(
    {}, optional={"url": JSON | st.text(max_size=300), "id": JSON | st.text(max_size=80), "filename": JSON,
                  "sha256": JSON, "folder": JSON | st.text(max_size=80)},
)
SEGMENT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
HEADERS = st.dictionaries(
    st.sampled_from(["Depth", "If", "Overwrite", "Destination", "Timeout", "Lock-Token", "Content-Type", "Range"]),
    # lstrip: requests itself refuses to send a value with leading whitespace.
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.lstrip),
    max_size=4,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def test_api_never_fails_with_a_server_error(server, alice, tally):
    @FUZZ
    @given(st.one_of(API_OBJECTS, JSON))
    def post(body):
        response = alice.session.post(server.url("/api/v1/tasks"), data=json.dumps(body),
                                      headers={"Content-Type": "application/json"})
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert response.status_code in (201, 400, 507), (body, response.status_code, response.text)
        assert "Traceback" not in response.text

    post()
    assert alice.session.get(server.url("/api/v1/me")).status_code == 200


def test_webdav_paths_and_headers_never_cause_a_server_error(server, alice, tally):
    @FUZZ
    @given(st.sampled_from(["GET", "PUT", "PROPFIND", "PROPPATCH", "DELETE", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "HEAD"]),
           st.lists(SEGMENT, min_size=1, max_size=4), HEADERS, st.binary(max_size=200))
    def request(method, segments, headers, body):
        path = "/".join(quote(segment, safe="") for segment in segments)
        response = alice.session.request(method, server.dav(path), headers=headers, data=body, timeout=30)
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 1
        assert response.status_code < 500, (method, path, headers, response.status_code, response.text[:300])
        assert "Traceback" not in response.text

    request()
    assert alice.session.get(server.dav()).status_code == 200
    assert "Traceback" not in server.log_text()
