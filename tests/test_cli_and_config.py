"""The command line and the configuration: every mistake gets one clear line and a non-zero exit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from server.settings import ConfigError, load_config
from server.sizes import SizeError, parse_size
from tests.forked_cli import fetchdrive
from tests.server_process import REPO


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"storage": {"root": str(tmp_path / "data")}, "database": {"url": database_url}}))
    return path


def cli(config: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """`fetchdrive --config CONFIG ARGS...` as a process forked with the app already imported
    (tests/forked_cli.py), as the tests' servers are; `serve` runs as `python -m server.cli` below."""
    return fetchdrive("--config", str(config), *args, input=input)


def one_line_error(result) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "text, expected",
    [("500M", 500 * 2**20), ("10G", 10 * 2**30), ("1.5T", int(1.5 * 2**40)), ("1048576", 1048576), ("none", None), (7, 7)],
)
def test_sizes_take_the_documented_forms(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["ten", "10X", "-5", "", "1.2.3G"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(SizeError):
        parse_size(text)


@pytest.mark.parametrize(
    "tree, message",
    [
        ({"server": {"prot": 1}}, "server.prot: unknown configuration key"),
        ({"engine": {"workers": "many"}}, "engine.workers: must be a whole number"),
        ({"engine": {"workers": 0}}, "engine.workers: must be at least 1"),
        ({"storage": {"default_quota": "lots"}}, "storage.default_quota:"),
        ({"engine": {"allow_private_networks": "yes"}}, "engine.allow_private_networks: must be true or false"),
        ({"engine": {"mirrors": ["ftp://x/{sha256}"]}}, "engine.mirrors:"),
        ({"server": {"tls": {"cert": "a.pem"}}}, "server.tls: set both cert and key"),
        ({"server": {"threads": 80, "max_threads": 60}}, "server.max_threads: must not be smaller than server.threads"),
        ({"catalog": [{"id": "x"}]}, "catalog: entry 1 needs at least `id` and `url`"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path, tree, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)


def test_serve_with_a_bad_config_stops_with_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("server:\n  port: high\n")
    assert "server.port" in one_line_error(cli(path, "serve"))


def test_serve_with_broken_yaml_or_a_missing_file_says_so(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("server: [unclosed\n")
    assert "not valid YAML" in one_line_error(cli(path, "serve"))
    assert "config file not found" in one_line_error(cli(tmp_path / "missing.yaml", "serve"))


@pytest.mark.both_databases
def test_user_commands_round_trip(config):
    assert cli(config, "user", "add", "carol", "--password", "carol-password", "--quota", "500M").returncode == 0
    listing = cli(config, "user", "list").stdout
    assert re.search(r"carol\s+0B\s+500M", listing)
    assert cli(config, "user", "quota", "carol", "1.5T").returncode == 0
    assert "1.5T" in cli(config, "user", "list").stdout
    assert cli(config, "user", "quota", "carol", "none").returncode == 0
    assert cli(config, "user", "passwd", "carol", "--password-stdin", input="another-password\n").returncode == 0
    assert cli(config, "user", "remove", "carol").returncode == 0
    assert "carol" not in cli(config, "user", "list").stdout


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["user", "add", "Bad Name", "--password", "long-enough"], None, "invalid user name"),
        (["user", "add", "dave", "--password", "short"], None, "password too short"),
        (["user", "add", "dave", "--password", "long-enough", "--quota", "lots"], None, "not a size"),
        (["user", "add", "dave", "--password-stdin"], "", "no password on standard input"),
        (["user", "passwd", "nobody", "--password", "long-enough"], None, "no user named 'nobody'"),
        (["user", "quota", "nobody", "1G"], None, "no user named 'nobody'"),
        (["user", "remove", "nobody"], None, "no user named 'nobody'"),
        (["user", "frobnicate"], None, "invalid choice"),
        (["catalog", "add", "id one", "https://example.com/x"], None, "invalid ID"),
        (["catalog", "add", "debian", "javascript:alert(1)"], None, "URL of 'debian'"),
        (["catalog", "add", "debian", "https://example.com/x", "--sha256", "abc"], None, "64 hex digits"),
        (["catalog", "remove", "missing"], None, "no catalog entry 'missing'"),
    ],
)
def test_cli_mistakes_get_one_line_and_a_non_zero_exit(config, args, stdin, message):
    assert message in one_line_error(cli(config, *args, input=stdin))


def test_adding_an_existing_user_is_refused_and_keeps_the_old_password(config):
    added = cli(config, "user", "add", "erin", "--password", "first-password")
    assert added.returncode == 0 and added.stdout.startswith("added user erin (quota ")
    assert "already exists" in one_line_error(cli(config, "user", "add", "erin", "--password", "second-password"))
    # The name is judged before the password: a short one does not hide that erin exists.
    for password in ("short", ""):
        assert "already exists" in one_line_error(cli(config, "user", "add", "erin", "--password-stdin", input=password + "\n"))


@pytest.mark.both_databases
def test_catalog_commands_round_trip(config):
    digest = "ab" * 32
    added = cli(config, "catalog", "add", "debian-iso", "https://example.com/d.iso", "--sha256", digest, "--filename", "d.iso")
    assert added.returncode == 0, added.stderr
    listing = cli(config, "catalog", "list").stdout
    assert "debian-iso" in listing and digest in listing and "d.iso" in listing
    assert cli(config, "catalog", "remove", "debian-iso").returncode == 0
    assert "debian-iso" not in cli(config, "catalog", "list").stdout


def test_serve_takes_host_and_port_and_logs_its_config_and_both_urls(tmp_path: Path):
    import socket
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for config_file, expected in ((None, "no config file"), (tmp_path / "mine.yaml", "read config file")):
        work = tmp_path / ("defaults" if config_file is None else "configured")
        work.mkdir()
        args = ["--config", str(config_file)] if config_file else []
        if config_file:
            config_file.write_text(yaml.safe_dump({"storage": {"root": str(work / "data")}, "server": {"port": 1}}))
        process = subprocess.Popen([sys.executable, "-m", "server.cli", *args, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   cwd=work, env={"PYTHONPATH": str(REPO), "FETCHDRIVE_ADMIN_PASSWORD": "admin-password-1",
                                                  "PATH": "/usr/bin:/bin"},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        deadline = time.monotonic() + 30
        try:
            while not any("dashboard" in line for line in lines):
                assert time.monotonic() < deadline and process.poll() is None, lines
                lines.append(process.stdout.readline())
        finally:
            process.terminate()
            process.wait(timeout=15)
        log = "".join(lines)
        assert expected in log
        assert f"data goes to {(work / 'data').resolve()}" in log
        assert "added user admin (quota 10G)" in log
        assert f"map the drive at http://127.0.0.1:{port}/dav/ and open the dashboard at http://127.0.0.1:{port}/" in log
