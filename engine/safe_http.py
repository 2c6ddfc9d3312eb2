"""A requests Session that connects only to addresses it has checked.

Every new connection (the first request, each redirect, each retry) resolves its host once
with `resolve_checked` and connects to exactly the address it checked, so there is no
DNS-rebinding gap; Host, SNI and certificate checks still use the name. Proxies from the
environment are ignored, since a proxy would bypass the check, and the session keeps no cookies. A refused address surfaces
as `BlockedAddressError` (possibly inside requests' exceptions): engine/errors.py classifies it.
"""

from __future__ import annotations

import socket
from http.cookiejar import DefaultCookiePolicy

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

from engine.addresses import Network, resolve_checked


def _checked_connection_class(base: type[HTTPConnection], allow_private: bool, allowlist: tuple[Network, ...]) -> type[HTTPConnection]:
    class CheckedConnection(base):  # type: ignore[valid-type, misc]
        def _new_conn(self) -> socket.socket:
            try:
                addresses = resolve_checked(self._dns_host, self.port, allow_private=allow_private, allowlist=allowlist)
            except socket.gaierror as error:
                raise NameResolutionError(self.host, self, error) from error
            last_error: OSError | None = None
            for _family, sockaddr in addresses:
                try:
                    return connection.create_connection(
                        (sockaddr[0], self.port), self.timeout,
                        source_address=self.source_address, socket_options=self.socket_options,
                    )
                except socket.timeout as error:
                    raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from error
                except OSError as error:
                    last_error = error
            raise NewConnectionError(self, f"Failed to establish a new connection: {last_error}") from last_error

    return CheckedConnection


class CheckedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connection pools use address-checked connections."""

    def __init__(self, *, allow_private: bool, allowlist: tuple[Network, ...] = ()) -> None:
        self._allow_private = allow_private
        self._allowlist = allowlist
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        http_conn = _checked_connection_class(HTTPConnection, self._allow_private, self._allowlist)
        https_conn = _checked_connection_class(HTTPSConnection, self._allow_private, self._allowlist)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }


def make_session(
    *, allow_private: bool, allowlist: tuple[Network, ...] = (), user_agent: str = "fetchdrive/0.1", max_redirects: int = 10
) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.max_redirects = max_redirects
    session.headers["User-Agent"] = user_agent
    # One session serves every user: a cookie an origin sets for one must never go out with
    # another's request. Cookies live only in each task's own jar (engine/origin_login.py).
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    adapter = CheckedAdapter(allow_private=allow_private, allowlist=allowlist)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
