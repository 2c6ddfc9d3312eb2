"""Runs the app on cheroot, behind `request_guard`: TLS when configured, the first admin,
clean shutdown on signals."""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import ssl
import sys
import threading
from pathlib import Path

from server.app import API_PREFIX, DAV_PREFIX, FetchdriveApp, Storage
from server.fast_files import FastFiles
from server.http_server import DeferredHandshakeAdapter, ElasticServer
from server.request_guard import request_guard
from server.settings import Config, ConfigError
from server.sizes import format_size

_log = logging.getLogger("fetchdrive")
ADMIN_PASSWORD_ENV = "FETCHDRIVE_ADMIN_PASSWORD"


def added_user(name: str, quota: int | None) -> str:
    """The one wording for a new account, from `user add` and from the first start."""
    return f"added user {name} (quota {format_size(quota)})"


def ensure_first_admin(storage: Storage, default_quota: int | None) -> None:
    """On a first start with no users, create `admin` (password from the environment or random)."""
    if storage.accounts.count():
        return
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(12)
    storage.accounts.add("admin", password, default_quota)
    if generated:
        # Printed once to the terminal, never to the log.
        print(f"{added_user('admin', default_quota)} with password: {password}", file=sys.stderr, flush=True)
    else:
        print(f"{added_user('admin', default_quota)} with the password from {ADMIN_PASSWORD_ENV}", file=sys.stderr, flush=True)


def _tls_adapter(config: Config) -> DeferredHandshakeAdapter | None:
    cert, key = config.path("server.tls.cert"), config.path("server.tls.key")
    if cert is None or key is None:
        return None
    for setting, file in (("server.tls.cert", cert), ("server.tls.key", key)):
        if not file.is_file():
            raise ConfigError(f"{setting}: file {file} not found")
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as error:
        raise ConfigError(f"server.tls: cannot load {cert} / {key} ({error}); check both are PEM files that match")
    adapter = DeferredHandshakeAdapter(str(cert), str(key))
    adapter.context = context
    return adapter


def _large_blocks_back_to_the_os() -> None:
    """Every password check takes 16 MiB for scrypt on the worker thread that runs it. glibc
    then raises its mmap threshold to that size, so each worker keeps such a block in an arena
    of its own: 200 open event streams (a thread each) cost 176 MiB, against 32 MiB with a
    fixed threshold of 4 MiB (bench/push.py). Blocks below it (the 1 MiB transfer buffers)
    are served as before."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: its allocator decides


def serve(config: Config, config_file: Path | None) -> None:
    """Start the server and block until SIGINT or SIGTERM; `config_file` is the file read, if any."""
    if config_file is None:
        _log.info("no config file (looked for ./config.yaml); built-in defaults apply; data goes to %s",
                  config.storage_root.resolve())
    else:
        _log.info("read config file %s; data goes to %s", config_file.resolve(), config.storage_root.resolve())
    _large_blocks_back_to_the_os()
    storage = Storage(config)
    _log.info("database: %s", storage.database)
    ensure_first_admin(storage, config["storage.default_quota"])
    app = FetchdriveApp(config, storage)
    app.start_background_work()
    fast_files = (FastFiles(app.provider, app.authenticator, app.dav.config, DAV_PREFIX)
                  if config["server.fast_get"] else None)
    host, port = config["server.host"], config["server.port"]
    server = ElasticServer(
        (host, port),
        request_guard(app, API_PREFIX),
        threads=config["server.threads"],
        max_threads=config["server.max_threads"],
        timeout=int(config["server.timeout"]),
        header_timeout=config["server.header_timeout"],
        server_name="fetchdrive",
        fast_files=fast_files,
    )
    server.ssl_adapter = _tls_adapter(config)
    try:
        server.prepare()
    except OSError as error:
        raise ConfigError(f"server.host/server.port: cannot listen on {host}:{port} ({error.strerror or error})")
    scheme = "https" if server.ssl_adapter else "http"
    bound_port = server.bind_addr[1]
    shown_host = f"[{host}]" if ":" in host else host
    base = f"{scheme}://{shown_host}:{bound_port}"
    _log.info("fetchdrive is serving; map the drive at %s/dav/ and open the dashboard at %s/", base, base)

    def stop(signum, _frame):
        _log.info("received %s, shutting down", signal.Signals(signum).name)
        app.end_streams()
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve()
    finally:
        app.stop_background_work()
        storage.database.close()
        _log.info("stopped")
