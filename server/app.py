"""Assembles fetchdrive from its parts: database, accounts, quota, the WebDAV app and the engine.

`FetchdriveApp` is the WSGI application cheroot serves: `/dav/` goes to WsgiDAV, `/api/v1/`
to the JSON API, `/` to the web page. Nothing here parses arguments or opens sockets.
"""

from __future__ import annotations

import logging
from pathlib import Path

from wsgidav.dav_error import DAVError
from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from engine.catalog import CatalogError
from engine.cluster_locks import cluster_locks
from engine.database import open_database
from engine.engine import DownloadEngine
from engine.engine_settings import EngineSettings, from_keys
from engine.nodes import Nodes
from provider.accounts import Accounts
from provider.dav_storage import NotifyingLockManager, SqliteLockStorage, SqlitePropertyManager
from provider.domain import Authenticator, FetchdriveDomainController, FetchdriveHTTPAuthenticator
from provider.fast_get import FastGet
from provider.fast_propfind import FastPropfind
from provider.login_throttle import LoginThrottle
from provider.path_locks import PathLocks
from provider.quota import Quota, QuotaExceeded
from provider.resources import user_ref_url
from provider.spaces import SpacesProvider
from server.api import Api
from server.dav_guard import dav_guard
from server.device_service import DeviceService
from server.devices_api import DevicesApi
from server.events_api import EventStream
from server.folder_view import FolderToWebDrive
from server.page_headers import sandboxed_files
from server.plain_errors import plain_errors
from server.removed_users import RemovedUsers
from server.settings import Config, ConfigError
from server.share_pages import SHARE_OWNER_KEY, SharePages
from server.share_service import ShareService
from server.shares import TOKEN_PREFIX, ShareStore
from server.shares_api import SharesApi
from server.web import STATIC_PREFIX, static_files, web_page

DAV_PREFIX = "/dav"
API_PREFIX = "/api/v1"
_log = logging.getLogger(__name__)


def _client_faults_unlogged(record: logging.LogRecord) -> bool:
    """WsgiDAV logs every failed PUT body with a traceback, even a client's fault that was
    answered with a 4xx (a body cut short or stalled) or a 507 (the quota): those stay out of
    the log."""
    error = record.exc_info[1] if record.exc_info else None
    return not (isinstance(error, DAVError) and (400 <= error.value < 500 or isinstance(error, QuotaExceeded)))


class Storage:
    """The data folder's layout and the objects that own its parts, shared with the other
    nodes on the same database and root: quota, path and DAV locks (engine/cluster_locks.py)."""

    def __init__(self, config: Config) -> None:
        self.root: Path = config.storage_root
        self.root.mkdir(parents=True, exist_ok=True)
        self.database = open_database(config["database.url"], self.root)
        self.nodes = Nodes(self.database, config["server.node"], config["engine.lease"])
        self.accounts = Accounts(self.database, self.root)
        self.spaces_root = self.root / "spaces"
        self.path_locks = PathLocks(cluster_locks(self.database, self.root, "paths"), self.spaces_root)
        self.dav_locks = cluster_locks(self.database, self.root, "dav", stripes=1)
        self.quota = Quota(self.database, self.accounts, self.nodes, cluster_locks(self.database, self.root, "users", 64),
                           self.root, config["storage.min_free"], config["storage.max_files"])
        self.shares = ShareStore(self.database, self.root / "share.key")
        self.temp_root = self.root / "tmp"

    def space(self, user: str) -> Path:
        return self.spaces_root / user


class FetchdriveApp:
    """The WSGI application: routes by path prefix."""

    def __init__(self, config: Config, storage: Storage | None = None) -> None:
        self.config = config
        self.storage = storage or Storage(config)
        self.authenticator = Authenticator(self.storage.accounts, LoginThrottle(self.storage.database))
        self.provider = SpacesProvider(self.storage.spaces_root, self.storage.temp_root, self.storage.quota,
                                       self.storage.path_locks, node=self.storage.nodes.name,
                                       body_timeout=config["server.timeout"], min_free=config["storage.min_free"])
        self.dav = WsgiDAVApp(self._dav_config())
        # WsgiDAV's own logging stays off, but an internal error (a 500) must reach our log.
        dav_logger = logging.getLogger("wsgidav")
        dav_logger.setLevel(logging.ERROR)
        dav_logger.propagate = True
        logging.getLogger("wsgidav.request_server").addFilter(_client_faults_unlogged)
        lock_manager = NotifyingLockManager(
            SqliteLockStorage(self.storage.database, self.storage.dav_locks), self.provider.lock_released,
            user_prefix=lambda user: user_ref_url(self.provider.share_path, user, "/"),
            max_owner_bytes=config["storage.max_lock_owner_bytes"], max_locks=config["storage.max_locks"],
        )
        self.dav.lock_manager = lock_manager
        self.provider.set_lock_manager(lock_manager)
        self.engine = DownloadEngine(
            self.storage.database,
            self.storage.root,
            self.provider.writer,
            from_keys(EngineSettings, config.values),
            event_history=config["events.history"],
            nodes=self.storage.nodes,
        )
        self.provider.hooks = self.engine
        self.removed_users = RemovedUsers(self.storage.accounts, self.engine)
        self.provider.events = self.engine.events
        self.api = Api(self.engine, self.authenticator, self.storage.quota, SharesApi(ShareService(self.storage.shares, self.provider)))
        self.api.extra_routes[API_PREFIX + "/devices"] = DevicesApi(DeviceService(
            self.engine.devices, self.provider.space_root, self.engine.devices.online))
        self.events = EventStream(self.api, self.engine.events, self.engine.devices, keepalive=config["events.keepalive"],
                                  max_streams_per_user=config["events.max_streams_per_user"])
        self.page = web_page(self.api)
        self._dav_entry = dav_guard(plain_errors(self.dav), DAV_PREFIX)
        self._dav_for_clients = sandboxed_files(self._dav_entry)
        self.share_pages = SharePages(self.storage.shares, self.provider,
                                      lambda user: self.storage.accounts.get(user) is not None, self._dav_entry,
                                      LoginThrottle(self.storage.database))

    def _dav_config(self) -> dict:
        return {
            "provider_mapping": {DAV_PREFIX: self.provider},
            "http_authenticator": {
                "domain_controller": FetchdriveDomainController,
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
                # Set only by SharePages, for the read-only GET of a shared file; an environ
                # key without HTTP_ cannot come from a request header.
                "trusted_auth_header": SHARE_OWNER_KEY,
            },
            "fetchdrive": {
                "authenticator": self.authenticator,
                "provider": self.provider,
                "fast_propfind": self.config["server.fast_propfind"],
                "fast_get": self.config["server.fast_get"],
            },
            "middleware_stack": [ErrorPrinter, FetchdriveHTTPAuthenticator, FastGet, FolderToWebDrive, FastPropfind,
                                 RequestResolver],
            # Swapped for a NotifyingLockManager right after construction.
            "lock_storage": False,
            "property_manager": SqlitePropertyManager(
                self.storage.database, self.storage.quota, lambda ref_url: self.provider.ref_url_owner(ref_url),
                self.config["storage.max_property_bytes"],
            ),
            "verbose": 2,
            # Bytes per read and write when streaming GET and PUT bodies (WsgiDAV's 8 KiB
            # default costs a Python round trip per 8 KiB).
            "block_size": 1024 * 1024,
            "logging": {"enable": False},
            "suppress_version_info": True,
            "hotfixes": {"emulate_win32_lastmod": True},
            "dir_browser": {"enable": False},
        }

    def start_background_work(self) -> None:
        """Join the nodes and drop reservations nobody holds any more, recount used bytes (a
        crash may have left a delta unapplied; other nodes may be writing meanwhile, see
        provider/quota.py), load the config's catalog, and start the download workers, which
        resume unfinished tasks (not those of users removed meanwhile), and the watch for users
        removed while the server runs."""
        self.storage.nodes.start()
        self.storage.quota.forget_reservations_of_gone_nodes()
        users = [user.name for user in self.storage.accounts.list()]
        properties = self.dav.prop_manager
        for user in users:
            prefix = user_ref_url(self.provider.share_path, user, "/")
            self.storage.quota.recount(user, self.provider.space_root(user), lambda: properties.bytes_under(prefix))
        try:
            self.engine.catalog.load_config_entries(self.config["catalog"])
        except CatalogError as error:
            raise ConfigError(f"catalog: {error}") from None
        self.removed_users.cancel_orphaned_downloads()
        self.engine.start(users)
        self.removed_users.start()

    def stop_background_work(self) -> None:
        self.removed_users.stop()
        self.engine.stop()
        self.storage.nodes.stop()

    def end_streams(self) -> None:
        """Let open event streams finish, so the server's threads can stop."""
        self.engine.events.close()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == DAV_PREFIX or path.startswith(DAV_PREFIX + "/"):
            return self._dav_for_clients(environ, start_response)
        if path == API_PREFIX + "/events":
            return self.events(environ, start_response)
        if path.startswith(API_PREFIX + "/"):
            return self.api(environ, start_response)
        if path in ("/", "/index.html"):
            return self.page(environ, start_response)
        if path.startswith(TOKEN_PREFIX):
            return self.share_pages(environ, start_response)
        if path.startswith(STATIC_PREFIX):
            return static_files(environ, start_response)
        return _not_found(start_response)


def _not_found(start_response):
    body = b"Not found. The drive is served under /dav/.\n"
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
