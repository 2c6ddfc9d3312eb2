"""Real clients against the drive: litmus, webdavclient3, and persistence across restarts."""

from __future__ import annotations

import os
import re
import subprocess
import threading

import pytest
import requests
from webdav3.client import Client

LOCK_BODY = (
    '<?xml version="1.0" encoding="utf-8"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    "<D:locktype><D:write/></D:locktype><D:owner>persist</D:owner></D:lockinfo>"
)


@pytest.mark.shared_server
@pytest.mark.both_databases
@pytest.mark.parametrize("folder", ["", "downloads/"])
def test_litmus_passes_every_group(server, alice, folder):
    result = subprocess.run(
        ["litmus", server.dav(folder), alice.name, alice.password],
        capture_output=True, text=True, timeout=300, cwd=server.base,
    )
    summaries = re.findall(r"summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed", result.stdout)
    assert {name for name, *_ in summaries} == {"basic", "copymove", "props", "locks", "http"}, result.stdout
    for name, run, passed, failed in summaries:
        assert failed == "0" and run == passed, f"litmus {name}: {result.stdout}"


@pytest.mark.shared_server
def test_webdavclient3_uploads_lists_downloads_moves_and_deletes_a_tree(server, alice, tmp_path):
    client = Client({"webdav_hostname": server.base_url, "webdav_root": "/dav/", "webdav_login": alice.name, "webdav_password": alice.password})
    local = tmp_path / "tree"
    (local / "sub").mkdir(parents=True)
    (local / "a.txt").write_text("alpha")
    (local / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    client.upload_sync(remote_path="tree", local_path=str(local))
    assert client.check("tree/sub/b.bin")
    assert sorted(client.list("tree")) == ["a.txt", "sub/"]
    back = tmp_path / "back"
    client.download_sync(remote_path="tree", local_path=str(back))
    assert (back / "sub" / "b.bin").read_bytes() == (local / "sub" / "b.bin").read_bytes()
    client.move(remote_path_from="tree/a.txt", remote_path_to="tree/sub/a.txt")
    assert sorted(client.list("tree/sub")) == ["a.txt", "b.bin"]
    client.clean("tree")
    assert not client.check("tree")


@pytest.mark.both_databases
def test_locks_and_dead_properties_survive_a_restart(server, alice):
    alice.session.put(server.dav("kept.txt"), data=b"x")
    proppatch = (
        '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop>'
        "<Z:mark>survives</Z:mark></D:prop></D:set></D:propertyupdate>"
    )
    assert alice.session.request("PROPPATCH", server.dav("kept.txt"), data=proppatch).status_code == 207
    locked = alice.session.request("LOCK", server.dav("kept.txt"), data=LOCK_BODY, headers={"Timeout": "Second-3600"})
    token = locked.headers["Lock-Token"]
    server.kill()
    server.start()
    query = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:x"><D:prop><Z:mark/></D:prop></D:propfind>'
    assert "survives" in alice.session.request("PROPFIND", server.dav("kept.txt"), data=query, headers={"Depth": "0"}).text
    assert alice.session.put(server.dav("kept.txt"), data=b"y").status_code == 423
    assert alice.session.put(server.dav("kept.txt"), data=b"y", headers={"If": f"({token})"}).status_code == 204
    assert alice.session.request("UNLOCK", server.dav("kept.txt"), headers={"Lock-Token": token}).status_code == 204


def test_https_is_served_when_a_certificate_is_configured(make_server, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        capture_output=True, check=True,
    )
    server = make_server(settings={"server.tls.cert": str(cert), "server.tls.key": str(key)})
    assert server.base_url.startswith("https://")
    response = requests.get(server.dav(), verify=str(cert), auth=("admin", "admin-password-1"))
    assert response.status_code == 200
    body = os.urandom(3 * 1024 * 1024 + 5)  # a TLS body cannot be spliced: the streamed path
    put = requests.put(server.dav("big.bin"), data=body, verify=str(cert), auth=("admin", "admin-password-1"))
    assert put.status_code == 201
    assert requests.get(server.dav("big.bin"), verify=str(cert), auth=("admin", "admin-password-1")).content == body
    plain = requests.get(server.dav().replace("https://", "http://"), timeout=10)
    assert plain.status_code == 400 and "use an https:// address" in plain.text
    assert "Traceback" not in server.log_text()


LOCK_BODY = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             "<D:locktype><D:write/></D:locktype></D:lockinfo>")


@pytest.mark.shared_server
def test_racing_locks_unlocks_puts_and_deletes_never_fail_with_500(server, alice):
    """Found by the load test: WsgiDAV's lock storage upgrading a read lock to purge an unknown
    token deadlocked, and a LOCK whose new empty file another client deleted at once crashed."""
    alice.session.put(server.dav("stale.txt"), data=b"x")

    def unlock_many(statuses: list[int]) -> None:
        session = server.session(alice.name, alice.password)
        for _ in range(20):
            response = session.request("UNLOCK", server.dav("stale.txt"), headers={"Lock-Token": "<opaquelocktoken:gone>"})
            statuses.append(response.status_code)
            response = session.put(server.dav("stale.txt"), data=b"y", headers={"If": "(<opaquelocktoken:gone>)"})
            statuses.append(response.status_code)
            response = session.request("LOCK", server.dav("contested.txt"), data=LOCK_BODY, headers={"Timeout": "Second-1"})
            statuses.append(response.status_code)
            statuses.append(session.delete(server.dav("contested.txt")).status_code)

    statuses: list[int] = []
    threads = [threading.Thread(target=unlock_many, args=(statuses,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 640 and max(statuses) < 500, sorted(set(statuses))
