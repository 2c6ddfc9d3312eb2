"""The JSON API: every route, its errors, isolation between users, and the OpenAPI document."""

from __future__ import annotations

import hashlib
import re

import pytest
import requests

from tests.downloads_helpers import url_shortcut, wait_for

# One worker runs the whole file (--dist loadgroup), so each of its shared servers starts once, not once a worker.
pytestmark = [pytest.mark.shared_server, pytest.mark.xdist_group("test_api")]

TASK_FIELDS = {"id", "source", "state", "bytes_done", "bytes_total", "path", "error", "speed", "eta", "instant"}


def api(server, path: str) -> str:
    return server.url("/api/v1" + path)


def wait_state(account, server, task_id: int, state: str, timeout: float = 20) -> dict:
    return wait_for(
        lambda: (task := account.session.get(api(server, f"/tasks/{task_id}")).json())["state"] == state and task,
        timeout=timeout,
        message=f"task {task_id} {state}",
    )


@pytest.mark.both_databases
def test_adding_a_url_runs_it_to_done_and_lists_it(server, alice, origin):
    origin.add("/api.bin", b"via the api")
    response = alice.session.post(api(server, "/tasks"), json={"url": origin.url("/api.bin")})
    assert response.status_code == 201
    task = response.json()
    assert TASK_FIELDS <= task.keys()
    done = wait_state(alice, server, task["id"], "done")
    assert done["path"] == "downloads/api.bin" and done["bytes_done"] == len(b"via the api")
    assert (server.space(alice.name) / "downloads" / "api.bin").read_bytes() == b"via the api"
    listed = alice.session.get(api(server, "/tasks")).json()
    assert [t["id"] for t in listed] == [task["id"]]


def test_triggers_appear_as_tasks_too(server, alice, origin):
    origin.add("/t.bin", b"trigger task")
    alice.session.put(server.dav("downloads/t.url"), data=url_shortcut(origin.url("/t.bin")))
    tasks = wait_for(lambda: alice.session.get(api(server, "/tasks")).json(), message="a task")
    assert tasks[0]["source"] == origin.url("/t.bin") and tasks[0]["trigger"] == "downloads/t.url"


def test_options_filename_sha256_and_folder_are_applied(server, alice, origin):
    origin.add("/x", b"options")
    body = {"url": origin.url("/x"), "filename": "named.txt", "sha256": hashlib.sha256(b"options").hexdigest(), "folder": "inbox"}
    task = alice.session.post(api(server, "/tasks"), json=body).json()
    assert wait_state(alice, server, task["id"], "done")["path"] == "downloads/inbox/named.txt"


@pytest.mark.both_databases
def test_list_filters_by_state_and_paginates_newest_first(server, alice, origin):
    origin.add("/missing", b"", status=404)
    ids = [alice.session.post(api(server, "/tasks"), json={"url": origin.url(f"/missing?{n}")}).json()["id"] for n in range(5)]
    for task_id in ids:
        wait_state(alice, server, task_id, "failed")
    first = alice.session.get(api(server, "/tasks?limit=2&state=failed"))
    assert [t["id"] for t in first.json()] == ids[::-1][:2]
    next_link = re.search(r"<([^>]+)>; rel=\"next\"", first.headers["Link"]).group(1)
    second = alice.session.get(server.url(next_link)).json()
    assert [t["id"] for t in second] == ids[::-1][2:4]
    assert alice.session.get(api(server, "/tasks?state=done")).json() == []


@pytest.mark.both_databases
def test_cancel_and_retry(server, alice, origin):
    origin.add("/slow", b"s" * (4 * 1024 * 1024), rate=256 * 1024)
    task = alice.session.post(api(server, "/tasks"), json={"url": origin.url("/slow")}).json()
    wait_state(alice, server, task["id"], "downloading")
    cancelled = alice.session.delete(api(server, f"/tasks/{task['id']}"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert alice.session.delete(api(server, f"/tasks/{task['id']}")).status_code == 409
    origin.add("/slow", b"fast now")
    retried = alice.session.post(api(server, f"/tasks/{task['id']}/retry"))
    assert retried.status_code == 200
    assert wait_state(alice, server, task["id"], "done")["bytes_done"] == len(b"fast now")
    assert alice.session.post(api(server, f"/tasks/{task['id']}/retry")).status_code == 409


def test_me_reports_the_quota(server, alice):
    alice.session.put(server.dav("f.bin"), data=b"x" * 1000)
    me = alice.session.get(api(server, "/me")).json()
    assert me == {"user": alice.name, "used_bytes": 1000, "quota_bytes": 10 * 1024 * 1024, "available_bytes": 10 * 1024 * 1024 - 1000}


@pytest.mark.both_databases
def test_one_user_never_sees_or_touches_another_users_tasks(server, alice, bob, origin):
    origin.add("/private", b"alice only")
    task = alice.session.post(api(server, "/tasks"), json={"url": origin.url("/private")}).json()
    assert bob.session.get(api(server, "/tasks")).json() == []
    assert bob.session.get(api(server, f"/tasks/{task['id']}")).status_code == 404
    assert bob.session.delete(api(server, f"/tasks/{task['id']}")).status_code == 404
    assert bob.session.post(api(server, f"/tasks/{task['id']}/retry")).status_code == 404


BAD_REQUESTS = [  # (body, what the reason must say)
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b"{}", "exactly one of"),
    (b'{"url": "https://a.example/x", "id": "y"}', "exactly one of"),
    (b'{"url": "javascript:alert(1)"}', "javascript"),
    (b'{"url": 5}', "non-empty single-line string"),
    (b'{"url": "https://a.example/x", "sha256": "nothex"}', "sha256"),
    (b'{"url": "https://a.example/x", "folder": "../../etc"}', "folder"),
    (b'{"url": "https://a.example/x", "colour": "red"}', "unknown field"),
    (b'{"url": "https://a.example/x\\nhttps://b.example/"}', "single-line"),
]


def test_bad_requests_get_400_with_a_reason(server, alice):
    # One user for every row: a refused request changes nothing.
    for body, message in BAD_REQUESTS:
        response = alice.session.post(api(server, "/tasks"), data=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, body
        assert message.lower() in response.json()["error"].lower(), body
    assert alice.session.get(api(server, "/tasks")).json() == []


def test_authentication_errors_and_unknown_routes(server, alice):
    assert requests.get(api(server, "/tasks")).status_code == 401
    assert requests.get(api(server, "/tasks"), auth=(alice.name, "wrong-password")).status_code == 401
    assert alice.session.get(api(server, "/tasks/999999")).status_code == 404
    assert alice.session.get(api(server, "/nothing")).status_code == 404
    assert alice.session.put(api(server, "/tasks")).status_code == 405
    assert alice.session.get(api(server, "/tasks?limit=0")).status_code == 400
    assert alice.session.get(api(server, "/tasks?state=bogus")).status_code == 400


def test_a_full_quota_gets_507(server, origin):
    tiny = server.unused_user_name("tiny")
    server.add_user(tiny, "tiny-password", quota="1K")
    session = server.session(tiny, "tiny-password")
    session.put(server.dav("fill.bin"), data=b"x" * 1024)
    response = session.post(api(server, "/tasks"), json={"url": origin.url("/x")})
    assert response.status_code == 507


def test_the_openapi_document_matches_the_routes(server, alice):
    document = requests.get(api(server, "/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == {
        ("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks"), ("GET", "/api/v1/tasks/{task_id}"),
        ("DELETE", "/api/v1/tasks/{task_id}"), ("POST", "/api/v1/tasks/{task_id}/retry"), ("GET", "/api/v1/me"),
        ("GET", "/api/v1/shares"), ("POST", "/api/v1/shares"), ("GET", "/api/v1/shares/{share_id}"),
        ("DELETE", "/api/v1/shares/{share_id}"), ("GET", "/api/v1/notifications"), ("POST", "/api/v1/notifications/test"),
        ("GET", "/api/v1/events"), ("GET", "/api/v1/devices"), ("PUT", "/api/v1/devices/{name}"),
        ("DELETE", "/api/v1/devices/{name}"), ("POST", "/api/v1/devices/{name}/send"),
        ("GET", "/api/v1/devices/{name}/deliveries"), ("POST", "/api/v1/devices/{name}/ack"),
    }
    for method, path in documented - {("GET", "/api/v1/events")}:  # a stream: tests/test_events.py
        concrete = path.replace("{task_id}", "999999").replace("{name}", "ghost").replace("{share_id}", "no-such-share")
        status = alice.session.request(method, server.url(concrete), json={}).status_code
        assert str(status) in document["paths"][path][method.lower()]["responses"], (method, path, status)
