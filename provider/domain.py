"""Basic authentication against fetchdrive's accounts, for the drive (WsgiDAV) and the API.

Every request must authenticate; there is no anonymous share. Digest is off because the
passwords are stored only as scrypt hashes (the README asks for HTTPS beyond localhost).
`Authenticator.login` is the one place where a request's `Authorization` header is read: a
missing or malformed header and a wrong password raise `LoginRefused` for a 401 with a
challenge; a login throttled after too many wrong passwords, for a 429 that says when to
try again (a right password must not be called wrong).
"""

from __future__ import annotations

import base64
import logging
import math

from wsgidav.dc.base_dc import BaseDomainController
from wsgidav.http_authenticator import HTTPAuthenticator

from provider.accounts import USER_NAME, Accounts
from provider.login_throttle import LoginThrottle

REALM = "fetchdrive"
# Base64 of the longest user name and password that accounts accept (1024 characters of up
# to 4 UTF-8 bytes), with room to spare; anything longer is not worth decoding.
MAX_CREDENTIALS = 8192
_log = logging.getLogger(__name__)


class LoginRefused(Exception):
    """A request that did not log in; str(e) is the short reason to give the client."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return 401 if self.retry_after is None else 429

    def headers(self) -> list[tuple[str, str]]:
        if self.retry_after is None:
            return [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]
        return [("Retry-After", str(self.retry_after))]

    def plain_answer(self, start_response) -> list[bytes]:
        body = f"{self}\n".encode()
        reason = "Unauthorized" if self.retry_after is None else "Too Many Requests"
        start_response(f"{self.status} {reason}", [
            *self.headers(), ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
        ])
        return [body]


def basic_credentials(header: str) -> tuple[str, str]:
    """User name and password from a Basic `Authorization` header (RFC 7617, UTF-8)."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise LoginRefused("authentication required (HTTP Basic)")
    encoded = encoded.strip()
    if len(encoded) > MAX_CREDENTIALS:
        raise LoginRefused("malformed Authorization header: the credentials are too long")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII input
        raise LoginRefused("malformed Authorization header: not base64 of UTF-8 text") from None
    user_name, colon, password = decoded.partition(":")
    if not colon:
        raise LoginRefused("malformed Authorization header: no ':' between user name and password")
    return user_name, password


def _shown(user_name: str) -> str:
    """The name as it may appear in the log: anything but a valid user name is not repeated."""
    return repr(user_name) if USER_NAME.match(user_name) else "an invalid user name"


class Authenticator:
    """Checks a user name and password with throttling; shared by WebDAV and the HTTP API."""

    def __init__(self, accounts: Accounts, throttle: LoginThrottle) -> None:
        self.accounts = accounts
        self.throttle = throttle

    def login(self, environ: dict) -> str:
        """The user whose Basic credentials the request carries; else raises LoginRefused."""
        user_name, password = basic_credentials(environ.get("HTTP_AUTHORIZATION", ""))
        if not self.check(user_name, password, environ.get("REMOTE_ADDR", "?")):
            raise LoginRefused("wrong user name or password")
        return user_name

    def check(self, user_name: str, password: str, address: str) -> bool:
        """True for the right password; raises LoginRefused (429) while the login is throttled."""
        wait = self.throttle.locked_for(user_name, address)
        if wait:
            _log.warning("login refused for %s from %s: too many wrong passwords, try again later",
                         _shown(user_name), address)
            seconds = math.ceil(wait)
            raise LoginRefused(f"too many wrong passwords for this user from your address; "
                               f"try again in {seconds} seconds", retry_after=seconds)
        if self.accounts.verify(user_name, password):
            self.throttle.succeeded(user_name, address)
            return True
        self.throttle.failed(user_name, address)
        _log.info("wrong password for %s from %s", _shown(user_name), address)
        return False

    def check_remembered(self, user_name: str, password: str, address: str) -> bool:
        """True where `check` would say True without a password hash: the login is not
        throttled and the password was verified before. False: only `check` can tell."""
        if self.throttle.locked_for(user_name, address, recent=True) or \
                not self.accounts.verified_before(user_name, password):
            return False
        self.throttle.succeeded(user_name, address, recent=True)
        return True


class FetchdriveHTTPAuthenticator(HTTPAuthenticator):
    """WsgiDAV's authentication step, done by `Authenticator.login`: short plain-text refusals
    instead of WsgiDAV's HTML page (and its 500 on a malformed header); no digest, no `?logout`."""

    def __init__(self, wsgidav_app, next_app, config) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self._authenticator: Authenticator = config["fetchdrive"]["authenticator"]

    def __call__(self, environ, start_response):
        environ["wsgidav.auth.realm"] = REALM
        environ["wsgidav.auth.roles"] = None
        environ["wsgidav.auth.permissions"] = None
        if self.trusted_auth_header and environ.get(self.trusted_auth_header):
            # Set by the share pages inside the process (server/share_pages.py); no request can.
            environ["wsgidav.auth.user_name"] = environ[self.trusted_auth_header]
            return self.next_app(environ, start_response)
        try:
            environ["wsgidav.auth.user_name"] = self._authenticator.login(environ)
        except LoginRefused as refusal:
            return refusal.plain_answer(start_response)
        return self.next_app(environ, start_response)


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
