"""Another site's page, in the real Chromium of a logged-in user, cannot act for that user (SPEC 6).

The user opens the dashboard (so the browser holds their Basic credentials), then a page on
another loopback origin (127.0.0.2) tries every way a page can send a state-changing request
without the server's consent: fetch in no-cors mode with text/plain and form bodies, form
posts (urlencoded, multipart, and text/plain shaped as JSON), a JSON fetch and a DELETE
(which need a CORS preflight), and a frame of the dashboard. No task may be created or
cancelled, and the dashboard itself must keep working.
"""

from __future__ import annotations

import base64
import json

from playwright.sync_api import expect

from tests.downloads_helpers import wait_for
from tests.origin import Origin
from tests.browser import add, open_page

ATTACK = """<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe><iframe name="sink3"></iframe><iframe name="sink4"></iframe>
<iframe id="framed" src="SERVER/"></iframe>
<form id="plain" method="POST" action="SERVER/api/v1/tasks" enctype="text/plain" target="sink1">
  <input name='{"url": "ATTACK_URL?form-plain", "x": "' value='"}'>
</form>
<form id="urlencoded" method="POST" action="SERVER/api/v1/tasks" target="sink2">
  <input name="url" value="ATTACK_URL?form-urlencoded">
</form>
<form id="multipart" method="POST" action="SERVER/api/v1/tasks" enctype="multipart/form-data" target="sink3">
  <input name="url" value="ATTACK_URL?form-multipart">
</form>
<form id="retry" method="POST" action="SERVER/api/v1/tasks/TASK_ID/retry" target="sink4"></form>
<script>
const tasks = "SERVER/api/v1/tasks";
const body = JSON.stringify({url: "ATTACK_URL?fetch"});
async function attempt(what, request) {
  try { await request(); } catch (error) { /* refused by the browser: fine */ }
  document.body.dataset[what] = "tried";
}
async function attack() {
  await attempt("plain", () => fetch(tasks, {method: "POST", mode: "no-cors", credentials: "include",
                                              headers: {"Content-Type": "text/plain"}, body}));
  await attempt("form", () => fetch(tasks, {method: "POST", mode: "no-cors", credentials: "include",
                                             body: new URLSearchParams({url: "ATTACK_URL?fetch-form"})}));
  await attempt("json", () => fetch(tasks, {method: "POST", credentials: "include",
                                             headers: {"Content-Type": "application/json"}, body}));
  await attempt("cancel", () => fetch(tasks + "/TASK_ID", {method: "DELETE", credentials: "include"}));
  await attempt("put", () => fetch("SERVER/dav/planted.txt", {method: "PUT", credentials: "include", body: "x"}));
  for (const id of ["plain", "urlencoded", "multipart", "retry"]) document.getElementById(id).submit();
  document.title = "attacked";
}
attack();
</script>
</body></html>
"""


def test_another_sites_page_cannot_add_cancel_or_write_with_the_users_credentials(browser, server, alice, origin):
    origin.add("/wanted.bin", b"w" * 1000)
    # Downloading for three minutes, a block a second: a worker notices a cancel when a block
    # arrives, so one stalled for 60 s had the server's stop wait 10 s for it at the end.
    origin.add("/stalled.bin", b"s" * 3_000_000, rate=16 * 1024)
    dashboard = open_page(browser, server, alice)
    add(dashboard, origin.url("/stalled.bin"))  # the dashboard's own POST works
    expect(dashboard.locator("li.task").first).to_have_attribute("data-state", "downloading")
    [own_task] = alice.session.get(server.url("/api/v1/tasks")).json()

    with Origin("127.0.0.2") as attacker:
        page = ATTACK.replace("SERVER", server.base_url).replace("ATTACK_URL", origin.url("/wanted.bin"))
        attacker.add("/attack.html", page.replace("TASK_ID", str(own_task["id"])).encode(), content_type="text/html")
        # The worst case: the browser sends the user's credentials with every request the page
        # makes (Chromium's own cache may leave them off cross-site requests).
        credentials = base64.b64encode(f"alice:{alice.password}".encode()).decode()
        evil = browser.new_context(extra_http_headers={"Authorization": f"Basic {credentials}"}).new_page()
        evil.goto(attacker.base_url + "/attack.html")
        expect(evil).to_have_title("attacked")
        # The four form posts and the two no-cors fetches reached the server and were refused
        # there (the JSON fetch, the DELETE and the PUT stop at the browser's CORS preflight).
        wait_for(lambda: server.log_text().count("refused a cross-site POST") == 6, message="six refused posts")
        # The dashboard does not render inside another site's frame: Chromium shows its error page.
        wait_for(lambda: any(frame.url.startswith("chrome-error://") for frame in evil.frames),
                 message="the framed dashboard blocked")
        assert not any(frame.url == server.url("/") for frame in evil.frames)
        evil.context.close()

    tasks = alice.session.get(server.url("/api/v1/tasks")).json()
    assert [task["id"] for task in tasks] == [own_task["id"]], json.dumps(tasks)[:500]
    assert tasks[0]["state"] == "downloading"
    assert not (server.space("alice") / "planted.txt").exists()
    assert not [request for request in origin.requests if request.path.startswith("/wanted.bin")]

    # The dashboard itself still adds and cancels (same-origin requests with JSON bodies).
    dashboard.bring_to_front()
    add(dashboard, origin.url("/wanted.bin"))
    expect(dashboard.locator("li.task").first).to_have_attribute("data-state", "done")
    stalled = dashboard.locator(f"li.task[data-id='{own_task['id']}']")
    stalled.get_by_role("button", name="Cancel").click()
    expect(stalled).to_have_attribute("data-state", "cancelled")
