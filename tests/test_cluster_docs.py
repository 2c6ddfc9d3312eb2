"""docs/cluster.md's node configuration and load balancer configurations, run as written.

The nginx and HAProxy blocks are taken from the document, with only what must differ on a
test machine replaced (the nodes' addresses, the listening ports, the certificate), and
started in front of three real nodes on one PostgreSQL and one storage root. Through each
balancer, with TLS ending there: every WebDAV method, a `Destination` of the public
`https://` URL, a large upload streamed through and readable from every node, a LOCK that
holds on every node, the cross-site check of a browser's `Origin`, the health check, and an
event stream whose events arrive while it stays open.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from urllib.parse import quote
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.downloads_helpers import wait_for
from tests.forked_cli import fetchdrive
from tests.postgres import PostgresCluster
from tests.server_process import ServerProcess
from tests.sse_helpers import Listener, free_port

# One worker runs the whole file (`--dist loadgroup`): spread over several, each started the
# three nodes and the balancers again, and again whenever it came back to the file.
pytestmark = pytest.mark.xdist_group("test_cluster_docs")

DOC = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"
DOC_NODES = ("10.0.0.11:8080", "10.0.0.12:8080", "10.0.0.13:8080")
USER, PASSWORD = "carol", "carol-cluster-pw-5"
LOCK_BODY = ('<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
             "<D:locktype><D:write/></D:locktype></D:lockinfo>")


def documented(language: str) -> str:
    """The document's one code block in `language`."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, f"docs/cluster.md should hold one {language} block"
    return blocks[0]


def on_this_machine(config: str, nodes: list[ServerProcess]) -> str:
    for address, node in zip(DOC_NODES, nodes, strict=True):
        assert address in config
        config = config.replace(address, node.base_url.removeprefix("http://"))
    return config


def nginx_config(config: str, https: int, http: int, cert: Path, key: Path, work: Path) -> tuple[list[str], Path]:
    config = (config.replace("listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
              .replace("listen 80;", f"listen 127.0.0.1:{http};")
              .replace("/etc/ssl/drive.example.com/fullchain.pem", str(cert))
              .replace("/etc/ssl/drive.example.com/privkey.pem", str(key)))
    path = work / "nginx.conf"
    # The document's file goes in nginx's http block, as Debian's sites-enabled/ does.
    path.write_text(f"daemon off; worker_processes 1; pid {work}/nginx.pid; error_log {work}/error.log;\n"
                    "events { worker_connections 256; }\n"
                    f"http {{ access_log off; client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;\n"
                    f"fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;\n"
                    f"{config}\n}}\n")
    return ["nginx", "-c", str(path), "-p", str(work)], path


def haproxy_config(config: str, https: int, http: int, cert: Path, key: Path, work: Path) -> tuple[list[str], Path]:
    both = work / "drive.pem"  # HAProxy takes the certificate and its key in one file
    both.write_text(cert.read_text() + key.read_text())
    config = (config.replace("bind :443 ssl crt /etc/haproxy/drive.example.com.pem", f"bind 127.0.0.1:{https} ssl crt {both}")
              .replace("bind :80", f"bind 127.0.0.1:{http}"))
    path = work / "haproxy.cfg"
    path.write_text(config)
    return ["haproxy", "-db", "-f", str(path)], path


BALANCERS: dict[str, tuple[str, Callable[..., tuple[list[str], Path]]]] = {
    "nginx": ("nginx", nginx_config),
    "haproxy": ("haproxy", haproxy_config),
}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, postgres_cluster: PostgresCluster) -> Iterator[list[ServerProcess]]:
    """Three nodes on one PostgreSQL database and one storage root."""
    work = tmp_path_factory.mktemp("cluster")
    url = postgres_cluster.new_database()
    started = [ServerProcess(work / name, {"server.node": name, "storage.root": str(work / "shared"),
                                           "database.url": url, "events.keepalive": 1}) for name in ("a", "b", "c")]
    try:
        # Together, as docs/cluster.md allows on an empty database: one of them creates user admin.
        with ThreadPoolExecutor(len(started)) as starting:
            list(starting.map(ServerProcess.start, started))
        started[0].add_user(USER, PASSWORD, quota="none")
        yield started
    finally:
        with ThreadPoolExecutor(len(started)) as stopping:
            list(stopping.map(ServerProcess.stop, started))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   capture_output=True, check=True)
    return cert, key


@pytest.fixture(scope="module", params=sorted(BALANCERS))
def balancer(request, nodes: list[ServerProcess], certificate: tuple[Path, Path], tmp_path_factory) -> Iterator[str]:
    """The document's configuration of one balancer, running; yields its public https URL."""
    program, configure = BALANCERS[request.param]
    if not shutil.which(program) and not Path(f"/usr/sbin/{program}").exists():
        pytest.skip(f"{program} is not installed (apt-get install {program}; .ci/run does)")
    work = tmp_path_factory.mktemp(request.param)
    work.chmod(0o755)  # nginx's workers run unprivileged and write request bodies under it
    https, http = free_port(), free_port()
    command, config = configure(on_this_machine(documented(request.param), nodes), https, http, *certificate, work)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    public = f"https://localhost:{https}"
    try:
        wait_for(lambda: _answers(public, certificate[0]) or process.poll() is not None, timeout=30,
                 message=f"{request.param} to listen")
        assert process.poll() is None, process.stderr.read().decode() + config.read_text()
        yield public
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str, cert: Path) -> bool:
    try:
        return requests.get(url + "/api/v1/openapi.json", verify=str(cert), timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def client(certificate: tuple[Path, Path]) -> requests.Session:
    session = requests.Session()
    session.auth, session.verify, session.trust_env = (USER, PASSWORD), str(certificate[0]), False
    return session


def direct() -> requests.Session:
    """A client of one node, bypassing the balancer."""
    session = requests.Session()
    session.auth, session.trust_env = (USER, PASSWORD), False
    return session


@pytest.mark.parametrize("name", ["plain.txt", "with space.txt", "ünïcödé.txt"])
def test_every_webdav_method_passes_with_the_public_https_destination(balancer: str, client: requests.Session,
                                                                      name: str) -> None:
    folder = quote(f"{balancer.rsplit(':', 1)[1]}-{name.split('.')[0]}")
    name = quote(name)
    assert client.request("MKCOL", f"{balancer}/dav/{folder}/").status_code == 201
    assert client.put(f"{balancer}/dav/{folder}/{name}", data=b"first").status_code == 201
    copied = client.request("COPY", f"{balancer}/dav/{folder}/{name}",
                            headers={"Destination": f"{balancer}/dav/{folder}/copy-{name}"})
    assert copied.status_code == 201, copied.text
    moved = client.request("MOVE", f"{balancer}/dav/{folder}/copy-{name}",
                           headers={"Destination": f"{balancer}/dav/{folder}/moved-{name}"})
    assert moved.status_code == 201, moved.text
    listing = client.request("PROPFIND", f"{balancer}/dav/{folder}/", headers={"Depth": "1"})
    assert listing.status_code == 207
    assert client.get(f"{balancer}/dav/{folder}/moved-{name}").content == b"first"
    patched = client.request("PROPPATCH", f"{balancer}/dav/{folder}/{name}", data=(
        '<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:x"><D:set><D:prop><Z:mark>m</Z:mark>'
        "</D:prop></D:set></D:propertyupdate>"))
    assert patched.status_code == 207
    assert client.delete(f"{balancer}/dav/{folder}/").status_code == 204


def test_a_large_upload_streams_through_and_every_node_serves_it(balancer: str, client: requests.Session,
                                                                 nodes: list[ServerProcess]) -> None:
    body = os.urandom(24 * 1024 * 1024 + 3)
    name = f"large-{balancer.rsplit(':', 1)[1]}.bin"
    assert client.put(f"{balancer}/dav/{name}", data=body).status_code == 201
    for node in nodes:
        assert direct().get(node.dav(name)).content == body
    assert client.get(f"{balancer}/dav/{name}").content == body


def test_a_lock_taken_through_the_balancer_holds_on_every_node(balancer: str, client: requests.Session,
                                                                nodes: list[ServerProcess]) -> None:
    name = f"locked-{balancer.rsplit(':', 1)[1]}.txt"
    client.put(f"{balancer}/dav/{name}", data=b"mine")
    locked = client.request("LOCK", f"{balancer}/dav/{name}", data=LOCK_BODY, headers={"Content-Type": "application/xml"})
    assert locked.status_code == 200
    token = locked.headers["Lock-Token"]
    for node in nodes:
        assert direct().put(node.dav(name), data=b"not yours").status_code == 423
    assert client.put(f"{balancer}/dav/{name}", data=b"still mine", headers={"If": f"({token})"}).status_code == 204
    assert client.request("UNLOCK", f"{balancer}/dav/{name}", headers={"Lock-Token": token}).status_code == 204


@pytest.mark.parametrize("origin, status", [
    ("{public}", 201),                      # the page itself, port included: Host passes unchanged
    ("https://elsewhere.example", 403),
    ("{public_other_port}", 403),
])
def test_a_browsers_origin_is_judged_by_the_public_host(balancer: str, client: requests.Session, origin: str,
                                                        status: int) -> None:
    name = f"shared-{balancer.rsplit(':', 1)[1]}.txt"
    client.put(f"{balancer}/dav/{name}", data=b"to share")
    other_port = balancer.rsplit(":", 1)[0] + ":1"
    answer = client.post(f"{balancer}/api/v1/shares", json={"path": name},
                         headers={"Origin": origin.format(public=balancer, public_other_port=other_port)})
    assert answer.status_code == status, answer.text


def test_events_reach_a_stream_held_open_through_the_balancer(balancer: str, client: requests.Session,
                                                               nodes: list[ServerProcess]) -> None:
    listener = Listener(client, balancer)
    try:
        listener.wait_for("ready")
        # Written through every node, so that the node holding the stream sees one of them
        # itself, whether or not events travel between nodes.
        names = [f"event-{balancer.rsplit(':', 1)[1]}-{node.config_path.parent.name}.txt" for node in nodes]
        for node, name in zip(nodes, names):
            assert direct().put(node.dav(name), data=b"news").status_code == 201
        wait_for(lambda: {event.data.get("path") for event in listener.events("file.created")} & set(names),
                 timeout=30, message="a file.created event through the balancer")
    finally:
        listener.close()


@pytest.mark.parametrize("node", ["a", "b", "c"])
def test_the_documented_node_config_is_accepted(node: str, tmp_path: Path) -> None:
    """Every key of the document's config.yaml exists and takes the value shown (the database
    and the shared mount replaced by what this machine has)."""
    config = (documented("yaml").replace("postgresql://fetchdrive@db.internal:5432/fetchdrive", "'sqlite:'")
              .replace("/srv/fetchdrive", str(tmp_path / "shared")).replace("node: a ", f"node: {node} "))
    (tmp_path / "config.yaml").write_text(config)
    listed = fetchdrive("--config", str(tmp_path / "config.yaml"), "user", "list")
    assert listed.returncode == 0, listed.stderr
