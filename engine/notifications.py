"""Tells users when their downloads finish or fail (SPEC 6, "Notifications").

A user lists Apprise URLs (`json://`, `ntfy://`, `mailto://`, `tgram://`, ...) one a line in
`.fetchdrive/notify.txt` of their own space; the file is read at each message, so an edit in
any file manager takes effect at once. Messages go out on a small pool of background
threads, one job a message and target, each tried a few times with back-off (tenacity), so
a failing or slow target holds up neither a download nor the other targets. Before each send the host the target
connects to is resolved and checked like a download's (`resolve_checked`): a notifier on
the local network needs `engine.allow_private_networks` or `engine.private_allowlist`.
Target URLs carry secrets (tokens, passwords); only their masked form is ever logged or
shown.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

if TYPE_CHECKING:
    import apprise

from engine.addresses import BlockedAddressError, Network, resolve_checked

NOTIFY_FILE = ".fetchdrive/notify.txt"
MAX_TARGETS = 20
_MAX_FILE_BYTES = 64 * 1024
_TIMEOUT = 10.0
_SENDERS = 4
_DEFAULT_PORTS = {"https": 443, "http": 80}
_log = logging.getLogger(__name__)
# Apprise logs failures with target details; fetchdrive logs its own masked line instead.
logging.getLogger("apprise").setLevel(logging.CRITICAL)


class TargetError(Exception):
    """A target that did not take the message this time (tried again)."""


class UnusableTarget(Exception):
    """A target that can never work as written: unknown kind, no host, a refused address."""


@dataclass(frozen=True)
class Target:
    """One line of notify.txt: the URL (secret) and what may be shown of it."""

    url: str
    masked: str


@dataclass(frozen=True)
class Message:
    title: str
    body: str


@dataclass(frozen=True)
class Outcome:
    target: str
    ok: bool
    error: str | None


def _plugin(url: str) -> apprise.NotifyBase | None:
    """Apprise's plugin for `url`, or None. Apprise is imported on first use: loading it and
    its plugins was about 0.25 s of every server start, and most servers never notify."""
    import apprise

    return apprise.Apprise.instantiate(url)


def _mask(url: str, plugin: apprise.NotifyBase | None) -> str:
    if plugin is None:
        return f"{url.partition('://')[0] or 'unknown'}://… (not a notification URL Apprise knows)"
    return plugin.url(privacy=True).split("?", 1)[0]


def read_targets(space_root: Path) -> list[Target]:
    """The targets a user listed, at most MAX_TARGETS; blank and `#` lines are skipped."""
    try:
        with open(space_root / NOTIFY_FILE, "rb") as file:
            raw = file.read(_MAX_FILE_BYTES)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    targets = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            targets.append(Target(line, _mask(line, _plugin(line))))
    return targets[:MAX_TARGETS]


def _endpoint(plugin: apprise.NotifyBase) -> tuple[str, int]:
    """The host and port a plugin connects to: a service's fixed address where it has one,
    else the mail server or the host the user named."""
    fixed = getattr(type(plugin), "notify_url", None)
    if isinstance(fixed, str) and fixed.startswith("http"):
        parts = urlsplit(fixed)
        return parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme]
    smtp_host = getattr(plugin, "smtp_host", None)
    if smtp_host:
        return smtp_host, getattr(plugin, "port", None) or 25
    if plugin.host:
        return plugin.host, plugin.port or (443 if getattr(plugin, "secure", False) else 80)
    cloud = getattr(type(plugin), "cloud_notify_url", None)
    if isinstance(cloud, str):
        parts = urlsplit(cloud)
        return parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme]
    raise UnusableTarget("the notification URL names no host")


class Notifier:
    """Sends users' notifications from a few background threads."""

    def __init__(self, *, allow_private: bool, allowlist: tuple[Network, ...] = (), attempts: int = 3,
                 first_wait: float = 1.0) -> None:
        self._allow_private = allow_private
        self._allowlist = allowlist
        self._attempts = attempts
        self._first_wait = first_wait
        self._pool = ThreadPoolExecutor(_SENDERS, thread_name_prefix="notifier")

    def stop(self) -> None:
        """Drop messages not yet sent (they are notices, not data); sends under way finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def notify(self, space_root: Path, message: Message) -> None:
        """Queue `message` for every target the user lists; returns at once."""
        if (space_root / NOTIFY_FILE).is_file():
            self._pool.submit(self._send_all, space_root, message)

    def send_test(self, space_root: Path) -> list[Outcome]:
        """Send a test message to each target now, once, and say how each went."""
        message = Message("fetchdrive: test message", "Notifications from fetchdrive reach you here.")
        return [self._send(target, message, attempts=1) for target in read_targets(space_root)]

    def _send_all(self, space_root: Path, message: Message) -> None:
        for target in read_targets(space_root):
            self._pool.submit(self._send_logged, target, message)

    def _send_logged(self, target: Target, message: Message) -> None:
        outcome = self._send(target, message, attempts=self._attempts)
        if not outcome.ok:
            _log.warning("notification to %s failed: %s", outcome.target, outcome.error)

    def _send(self, target: Target, message: Message, *, attempts: int) -> Outcome:
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=self._first_wait, max=30),
            retry=retry_if_exception_type(TargetError),
            reraise=True,
        )
        try:
            retrying(self._send_once, target, message)
        except (TargetError, UnusableTarget, RetryError) as error:
            return Outcome(target.masked, False, str(error))
        return Outcome(target.masked, True, None)

    def _send_once(self, target: Target, message: Message) -> None:
        plugin = _plugin(target.url)
        if plugin is None:
            raise UnusableTarget("not a notification URL Apprise knows; see the Apprise documentation")
        host, port = _endpoint(plugin)
        try:
            resolve_checked(host, port, allow_private=self._allow_private, allowlist=self._allowlist)
        except BlockedAddressError as error:
            raise UnusableTarget(str(error)) from None
        except socket.gaierror:
            raise TargetError(f"the host {host} does not resolve") from None
        plugin.socket_connect_timeout = _TIMEOUT
        plugin.socket_read_timeout = _TIMEOUT
        plugin.redirects = False  # a redirect could lead past the address check above
        if not plugin.notify(body=message.body, title=message.title):
            raise TargetError("the target did not accept the message")
