"""Shared fixtures: a real server subprocess, two users, and a loopback origin."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser

from engine.database import SQLITE_URL
from tests.browser import chromium
from tests.origin import Origin
from tests.postgres import PASSWORD as POSTGRES_PASSWORD
from tests.postgres import PostgresCluster
from tests.server_process import ADMIN_PASSWORD, PASSWORDS_USED, ServerProcess

_AUTHORIZATION_VALUE = re.compile(r"Basic [A-Za-z0-9+/=]{8,}")
TALLY: Counter = Counter()  # what the adversarial suite tried (tests/adversarial/conftest.py)


def pytest_sessionfinish(session) -> None:
    """Under pytest-xdist, a worker hands its tally to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["adversarial_tally"] = dict(TALLY)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    TALLY.update(getattr(node, "workeroutput", {}).get("adversarial_tally", {}))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TALLY or hasattr(config, "workeroutput"):
        return
    failures = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    terminalreporter.section("adversarial summary")
    for name in ("requests made", "files checked", "crashes survived", "hostile inputs tried", "downloads delivered"):
        terminalreporter.write_line(f"{name:22s} {TALLY[name]}")
    terminalreporter.write_line(f"{'failures':22s} {failures}")


@dataclass
class Account:
    name: str
    password: str
    session: requests.Session


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory) -> Iterator[None]:
    """After the whole run: no password or Authorization value in any server log or error file."""
    yield
    leaks = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.name != "server.log" and not path.name.endswith(".error.txt") or not path.is_file():
            continue  # (a client may name a folder `x.error.txt`)
        text = path.read_text(errors="replace")
        leaks += [f"{path}: a password" for password in PASSWORDS_USED if password in text]
        leaks += [f"{path}: {match}" for match in _AUTHORIZATION_VALUE.findall(text)]
    assert not leaks, leaks[:10]


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """This worker's throwaway PostgreSQL server, started when a test first needs it."""
    PASSWORDS_USED.add(POSTGRES_PASSWORD)
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A `database.url` naming a new, empty PostgreSQL database."""
    return postgres_cluster.new_database()


@pytest.fixture(scope="module")
def database(request) -> str:
    """The database the fixtures' servers run on: "sqlite", unless the test is marked
    `both_databases` and this is its run on "postgresql"."""
    return getattr(request, "param", "sqlite")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A file whose tests share a server runs on one worker (`--dist loadgroup`): spread over
    several, each worker started the file's server again, and again whenever it came back to
    the file after another one's tests."""
    for item in items:
        if item.get_closest_marker("shared_server") and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_generate_tests(metafunc) -> None:
    if "database" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("both_databases"):
        metafunc.parametrize("database", ["sqlite", "postgresql"], indirect=True, scope="module")
    elif metafunc.definition.get_closest_marker("on_postgresql"):
        metafunc.parametrize("database", ["postgresql"], indirect=True, scope="module")


def _new_database_url(request, database: str) -> str:
    return SQLITE_URL if database == "sqlite" else request.getfixturevalue("postgres_cluster").new_database()


def _on_database(request, database: str, settings: dict | None) -> dict:
    """`settings` plus, on PostgreSQL, the `database.url` of a fresh database."""
    if database == "sqlite" or "database.url" in (settings or {}):
        return dict(settings or {})
    return {"database.url": _new_database_url(request, database), **(settings or {})}


@pytest.fixture
def database_url(request, database: str) -> str:
    """A `database.url` for a config of the test's own: `sqlite:`, or a fresh PostgreSQL
    database on a `both_databases` test's second run."""
    return _new_database_url(request, database)


@pytest.fixture
def make_server(request, tmp_path: Path, database: str) -> Iterator:
    """Factory: make_server(settings={"engine.workers": 1}) starts a server with those config keys."""
    started: list[ServerProcess] = []

    def factory(name: str = "server", settings: dict | None = None) -> ServerProcess:
        server = ServerProcess(tmp_path / name, _on_database(request, database, settings))
        started.append(server.start())
        return server

    yield factory
    for server in started:
        server.stop()


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "shared_server(settings=None): the file's tests share one server (`server`), started with "
        "those config keys, each test with users of its own")
    config.addinivalue_line(
        "markers", "both_databases: the test runs twice, its servers (server, make_server, shared_servers) on "
        "SQLite and then on PostgreSQL")
    config.addinivalue_line(
        "markers", "on_postgresql: the test runs once, its servers on PostgreSQL (several nodes need it; "
        "tests/engine/test_claims.py holds the claims equal on both databases)")


@pytest.fixture(scope="module")
def _shared_started() -> Iterator[dict[tuple[str, str], ServerProcess]]:
    """The file's shared servers by database and settings, stopped after its last test."""
    started: dict[tuple[str, str], ServerProcess] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def shared_servers(request, tmp_path_factory, database: str,
                   _shared_started: dict[tuple[str, str], ServerProcess]) -> Callable[..., ServerProcess]:
    """Factory: shared_servers({"engine.workers": 1}) is one server with those config keys for
    the whole test file, started by the first test that asks for it. For tests whose settings
    are their own but which need no restart or server-wide state of their own."""
    def factory(settings: dict | None = None) -> ServerProcess:
        key = (database, json.dumps(settings or {}, sort_keys=True))
        if key not in _shared_started:
            _shared_started[key] = ServerProcess(tmp_path_factory.mktemp("shared") / "server",
                                                 _on_database(request, database, settings)).start()
        return _shared_started[key]

    return factory


@pytest.fixture
def shared_server(request, shared_servers) -> ServerProcess:
    """One server for a whole test file marked `pytestmark = pytest.mark.shared_server`: for
    tests that need no restarts or server-wide state of their own. Starting a server for each
    test was most of the suite's time; each test still gets users of its own (alice,
    alice2...), so what one test does is invisible to the next, as between strangers.
    `pytest.mark.shared_server(settings={...})` starts it with those config keys."""
    marker = request.node.get_closest_marker("shared_server")
    return shared_servers(marker.kwargs.get("settings") if marker else None)


@pytest.fixture
def server(request, database: str) -> ServerProcess:
    # `database` is named so that a `both_databases` test is parametrized by it.
    if request.node.get_closest_marker("shared_server"):
        return request.getfixturevalue("shared_server")
    return request.getfixturevalue("make_server")()


def new_account(server: ServerProcess, name: str, password: str, quota: str = "10M") -> Account:
    """A user with that quota: `name`, or `name2`, `name3`... on a server shared by earlier tests."""
    name = server.unused_user_name(name)
    server.add_user(name, password, quota=quota)
    return Account(name, password, server.session(name, password))


@pytest.fixture
def alice(server: ServerProcess) -> Account:
    return new_account(server, "alice", "alice-password")


@pytest.fixture
def bob(server: ServerProcess) -> Account:
    return new_account(server, "bob", "bob-password-2")


@pytest.fixture
def admin(server: ServerProcess) -> Account:
    return Account("admin", ADMIN_PASSWORD, server.session("admin", ADMIN_PASSWORD))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, one a module (tests/browser.py)."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def origin() -> Iterator[Origin]:
    """A real HTTP origin on loopback with fault injection."""
    with Origin() as running:
        yield running
