"""Logins for origins that want one (SPEC 4c), and the rules that keep them with their host.

A task's login comes from three places: the trigger (`user:pass@` in its URL, `header=`
lines), stored secretly on the task; the user's own `.fetchdrive/netrc`; and the user's own
`.fetchdrive/cookies.txt` (Netscape format). The two files are read at each task start, so an
edit in any file manager counts from the next download on. `Login.headers_for(url)` says what
one request may carry: the trigger's headers only on the trigger's origin (scheme, host and
port), netrc credentials only on the host the netrc names, cookies by the cookie rules
(domain, path, secure). The fetcher asks it again at every redirect hop, so nothing follows a
redirect to another host. None of these values ever appears in a message: errors name the
file, the line or the header name, never a value.
"""

from __future__ import annotations

import base64
import io
import json
import netrc
import re
import warnings
from dataclasses import dataclass, field, replace
from http.cookiejar import LoadError, MozillaCookieJar
from pathlib import Path
from urllib.parse import unquote, urlsplit

from engine.errors import PermanentError

# http.cookiejar reports a line it cannot read as an "http.cookiejar bug!" warning carrying the
# traceback, whose message can quote the line's fields (a cookie's value) into the server's
# log; the user gets a clear error instead (_read_cookies).
warnings.filterwarnings("ignore", message="http.cookiejar bug!", category=UserWarning)

NETRC_FILE = ".fetchdrive/netrc"
COOKIES_FILE = ".fetchdrive/cookies.txt"
MAX_HEADERS = 32
MAX_HEADER_LENGTH = 8192
_MAX_FILE_BYTES = 1024 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e]*$")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_SESSION_EXPIRY = re.compile(r"^((?:[^\t\n]*\t){4})0(\t)", re.MULTILINE)
_COOKIES_MAGIC = re.compile(r"#( Netscape)? HTTP Cookie File")
# Headers that frame the message, pick the connection or the byte range, or that the fetcher
# sets itself to resume and to ask about freshness: a trigger may not set them.
FORBIDDEN_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
    "proxy-authorization", "proxy-authenticate", "proxy-connection", "expect", "range", "if-range",
    "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "accept-encoding",
})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def without_userinfo(url: str) -> str:
    """`url` with any `user:pass@` removed: the form that is stored, shown and logged."""
    return _USERINFO.sub(r"\1", url)


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL; None for anything else."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return (scheme, host, port) if host and port else None


def parse_header_line(line: str) -> tuple[str, str]:
    """`Name: value` of a `header=` line; ValueError (naming the header, never its value) if
    it is not a header a trigger may set."""
    name, colon, value = line.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not _TOKEN.match(name):
        raise ValueError("a header= line must read header=Name: value, with a plain header name")
    if name.lower() in FORBIDDEN_HEADERS:
        raise ValueError(f"header={name} is not allowed: fetchdrive sets {name} itself or it would break the transfer")
    if not _FIELD_VALUE.match(value) or len(value) > MAX_HEADER_LENGTH:
        raise ValueError(
            f"the value of header={name} must be printable ASCII on one line, at most {MAX_HEADER_LENGTH} characters"
        )
    return name, value


def trigger_secrets(url: str | None, headers: tuple[tuple[str, str], ...]) -> str | None:
    """What a task stores of its trigger's login: its header= lines, plus Basic credentials
    from the URL's userinfo (None: no URL, a content ID) unless a header= line sets
    Authorization. JSON, or None if none."""
    sent = [list(pair) for pair in headers]
    try:
        parts = urlsplit(url or "")
        user, password = parts.username, parts.password
    except ValueError:
        user = password = None
    if (user or password) and not any(name.lower() == "authorization" for name, _ in headers):
        sent.append(["Authorization", _basic(unquote(user or ""), unquote(password or ""))])
    return json.dumps(sent) if sent else None


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@dataclass
class Login:
    """What one task may send to the origins it talks to (see the module docstring)."""

    origin_headers: list[tuple[str, str]] = field(default_factory=list, repr=False)
    netrc_hosts: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    cookies: MozillaCookieJar = field(default_factory=MozillaCookieJar, repr=False)
    origin: tuple[str, str, int] | None = None  # where origin_headers may go

    def at(self, url: str) -> Login:
        """This login with the trigger's headers bound to `url`'s origin (cookies shared)."""
        return replace(self, origin=origin_of(url))

    def headers_for(self, url: str) -> dict[str, str]:
        """The headers a request to `url` may carry; cookies are added by the cookie jar."""
        hop = origin_of(url)
        headers = dict(self.origin_headers) if hop is not None and hop == self.origin else {}
        machine = self.netrc_hosts.get(hop[1]) if hop else None
        if machine and not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = _basic(*machine)
        return headers


def read_login(space_root: Path, secrets: str | None) -> Login:
    """The login of a task whose trigger stored `secrets`, with the user's netrc and cookies
    as they are now; PermanentError naming the file (never its content) if one is unusable."""
    return Login(
        origin_headers=[(name, value) for name, value in json.loads(secrets)] if secrets else [],
        netrc_hosts=_read_netrc(space_root / NETRC_FILE),
        cookies=_read_cookies(space_root / COOKIES_FILE),
    )


def _read_text(path: Path, name: str) -> str | None:
    try:
        with open(path, "rb") as file:
            data = file.read(_MAX_FILE_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        raise PermanentError(f"{name} in your space cannot be read (is it a folder?)") from None
    if len(data) > _MAX_FILE_BYTES:
        raise PermanentError(f"{name} in your space is larger than 1 MiB; keep only the hosts you need in it")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PermanentError(f"{name} in your space is not UTF-8 text") from None


def _read_netrc(path: Path) -> dict[str, tuple[str, str]]:
    """`machine` entries by lower-case host; a `default` entry is ignored, since it would send
    one password to every host a download is redirected to."""
    if _read_text(path, NETRC_FILE) is None:  # checks size and encoding; netrc reads the file itself
        return {}
    try:
        parsed = netrc.netrc(str(path))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError:
        raise PermanentError(f"{NETRC_FILE} in your space cannot be read") from None
    except netrc.NetrcParseError as error:
        # error.msg quotes the offending token, which may be a password: give the line only.
        raise PermanentError(
            f"{NETRC_FILE} in your space is not in netrc format near line {error.lineno} "
            "(lines like: machine HOST login NAME password SECRET)"
        ) from None
    return {host.lower(): (entry[0] or "", entry[2] or "") for host, entry in parsed.hosts.items()}


def _read_cookies(path: Path) -> MozillaCookieJar:
    jar = MozillaCookieJar()
    text = _read_text(path, COOKIES_FILE)
    if text is None:
        return jar
    if not _COOKIES_MAGIC.match(text):
        text = "# Netscape HTTP Cookie File\n" + text  # many exporters leave the header out
    # Browsers export a session cookie with expiry 0, which http.cookiejar would take as expired.
    text = _SESSION_EXPIRY.sub(r"\1\2", text)
    try:
        # load() takes only a file name; the text was read (size-limited, header added) already.
        jar._really_load(io.StringIO(text), COOKIES_FILE, ignore_discard=True, ignore_expires=False)
    except (LoadError, ValueError, IndexError):
        # LoadError's message quotes the offending line, which holds a cookie value.
        raise PermanentError(
            f"{COOKIES_FILE} in your space is not a Netscape cookies file (tab-separated lines: "
            "domain, subdomains TRUE/FALSE, path, secure TRUE/FALSE, expiry, name, value)"
        ) from None
    return jar

