"""The WsgiDAV domain controller: Basic authentication against fetchdrive's accounts.

Every request must authenticate; there is no anonymous share. Digest is off because the
passwords are stored only as scrypt hashes (the README asks for HTTPS beyond localhost).
"""

from __future__ import annotations

import logging

from wsgidav.dc.base_dc import BaseDomainController

from provider.accounts import Accounts
from provider.login_throttle import LoginThrottle

REALM = "fetchdrive"
_log = logging.getLogger(__name__)


class Authenticator:
    """Checks a user name and password with throttling; shared by WebDAV and the HTTP API."""

    def __init__(self, accounts: Accounts, throttle: LoginThrottle | None = None) -> None:
        self.accounts = accounts
        self.throttle = throttle or LoginThrottle()

    def check(self, user_name: str, password: str, address: str) -> bool:
        if self.throttle.is_locked(user_name, address):
            _log.warning("login refused for %r from %s: too many wrong passwords, try again later", user_name, address)
            return False
        if self.accounts.verify(user_name, password):
            self.throttle.succeeded(user_name, address)
            return True
        self.throttle.failed(user_name, address)
        _log.info("wrong password for %r from %s", user_name, address)
        return False


class FetchdriveDomainController(BaseDomainController):
    """Instantiated by WsgiDAV; finds the Authenticator under config["fetchdrive"]."""

    def __init__(self, wsgidav_app, config) -> None:
        super().__init__(wsgidav_app, config)
        self._authenticator: Authenticator = config["fetchdrive"]["authenticator"]

    def __str__(self) -> str:
        return "FetchdriveDomainController"

    def get_domain_realm(self, path_info, environ) -> str:
        return REALM

    def require_authentication(self, realm, environ) -> bool:
        return True

    def basic_auth_user(self, realm, user_name, password, environ) -> bool:
        return self._authenticator.check(user_name, password, environ.get("REMOTE_ADDR", "?"))

    def supports_http_digest_auth(self) -> bool:
        return False
