"""Generated attempts to get another user's download out of the shared content store.

Three users each fetch private content; then random users try every way a hash can be named
(`.id` `sha256:` IDs in any case, with and without `filename=`/`sha256=` lines; `.url`,
`.desktop` and `.webloc` triggers or API requests pairing a dead, missing or changed URL with
someone else's hash). None of them may ever receive bytes they did not fetch themselves, and
the answer to a `sha256:` ID must read the same for held and unheld hashes.
"""

from __future__ import annotations

import hashlib
import os
import socket
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Account
from tests.downloads_helpers import url_shortcut, wait_for

USERS = ("ann", "ben", "cy")
PRIVATE = {user: [os.urandom(50_000 + 1000 * n + len(user)) for n in range(2)] for user in USERS}
UNHELD = hashlib.sha256(b"nobody fetched this").hexdigest()
NAMES = count()


def _dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/x.bin"


@pytest.fixture
def crowd(make_server, origin):
    """A server whose mirror serves nothing, three users holding private downloads, and a URL
    each of them fetched that has changed since."""
    server = make_server(settings={"engine.mirrors": [origin.url("/mirror/{sha256}")], "engine.workers": 6})
    accounts = {}
    for user in USERS:
        server.add_user(user, f"{user}-password-7", quota="50M")
        accounts[user] = Account(user, f"{user}-password-7", server.session(user, f"{user}-password-7"))
        for number, body in enumerate(PRIVATE[user]):
            origin.add(f"/{user}/{number}.bin", body)
            accounts[user].session.put(server.dav(f"downloads/own{number}.url"),
                                       data=url_shortcut(origin.url(f"/{user}/{number}.bin")))
    for user in USERS:
        for number in range(len(PRIVATE[user])):
            wait_for((server.space(user) / "downloads" / f"{number}.bin").exists, message=f"{user}'s download")
    for user in USERS:
        origin.change(f"/{user}/1.bin", b"changed since " + user.encode())
    return server, accounts


def _trigger(form: str, digest: str, url: str) -> tuple[str, bytes]:
    if form == "id":
        return ".id", f"sha256:{digest}\n".encode()
    if form == "id-upper-named":
        return ".id", f"sha256:{digest.upper()}\nfilename=mine.bin\nsha256={digest}\n".encode()
    if form == "url-ini":
        return ".url", url_shortcut(url, sha256=digest)
    if form == "url-plain":
        return ".url", f"{url}\nsha256={digest}\n".encode()
    if form == "desktop":
        return ".desktop", f"[Desktop Entry]\nType=Link\nURL={url}\nsha256={digest}\n".encode()
    return ".webloc", (
        '<?xml version="1.0"?><plist version="1.0"><dict><key>URL</key>'
        f"<string>{url}</string><key>sha256</key><string>{digest}</string></dict></plist>"
    ).encode()


FORMS = st.sampled_from(["id", "id-upper-named", "url-ini", "url-plain", "desktop", "webloc", "api-id", "api-url"])
URL_KINDS = st.sampled_from(["dead", "missing", "changed"])


def test_no_trigger_form_gets_another_users_content_by_its_hash(crowd, origin, tally):
    server, accounts = crowd
    origin.add("/missing.bin", b"", status=404)
    answers: dict[str, set[str]] = {}

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(USERS), st.sampled_from(USERS), st.integers(0, 1), FORMS, URL_KINDS, st.booleans())
    def attempt(attacker, victim, number, form, url_kind, unheld):
        account = accounts[attacker]
        digest = UNHELD if unheld else hashlib.sha256(PRIVATE[victim][number]).hexdigest()
        url = {"dead": _dead_url(), "missing": origin.url("/missing.bin"), "changed": origin.url(f"/{victim}/1.bin")}[url_kind]
        if form.startswith("api-"):
            body = {"id": f"sha256:{digest}"} if form == "api-id" else {"url": url, "sha256": digest}
            created = account.session.post(server.url("/api/v1/tasks"), json=body)
            assert created.status_code == 201, created.text
            task_url = server.url(f"/api/v1/tasks/{created.json()['id']}")

            def settled() -> dict | None:
                task = account.session.get(task_url).json()
                return task if task["state"] in ("failed", "waiting", "done") else None
            task = wait_for(settled, message=f"{form} to settle")
            account.session.delete(task_url)
        else:
            suffix, data = _trigger(form, digest, url)
            name = f"try{next(NAMES)}{suffix}"
            assert account.session.put(server.dav(f"downloads/{name}"), data=data).status_code == 201

            def settled() -> dict | None:
                for t in account.session.get(server.url("/api/v1/tasks?limit=20")).json():
                    if t["trigger"] == f"downloads/{name}" and t["state"] in ("failed", "waiting", "done"):
                        return t
                return None
            task = wait_for(settled, message=f"{name} to settle")
            account.session.delete(server.dav(f"downloads/{name}"))
            account.session.delete(server.dav(f"downloads/{name}.error.txt"))
        tally["hostile inputs tried"] += 1
        tally["requests made"] += 3
        assert task["state"] != "done", task  # no URL here serves the hash: a delivery came from the store
        if form in ("id", "id-upper-named", "api-id"):
            answers.setdefault(task["error"].replace(digest, "HASH"), set()).add("unheld" if unheld else "held")
        strangers = [body for user in USERS if user != attacker for body in PRIVATE[user]]
        files = [path for path in (server.space(attacker) / "downloads").iterdir() if path.is_file()]
        tally["files checked"] += len(files)
        leaked = [path.name for path in files if path.read_bytes() in strangers]
        assert not leaked, (attacker, form, url_kind, leaked)

    attempt()
    assert len(answers) <= 1, answers  # one wording for held and unheld hashes alike
