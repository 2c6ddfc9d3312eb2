"""What the services refuse, as classes the API, the CLI and the web page each render their way.

    ServiceError        a request refused; str(error) is one sentence for the user
     +-- Invalid        the request itself is malformed (the API answers 400)
     +-- NotFound       it names nothing the caller owns, or nothing at all (404)
     +-- Conflict       it does not fit the current state (409)
     +-- NoRoom         the caller's quota has no room for it (507)
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request a service refuses; str(error) is one sentence for the user."""


class Invalid(ServiceError):
    """The request is malformed."""


class NotFound(ServiceError):
    """The request names nothing the caller owns (another user's thing looks the same)."""


class Conflict(ServiceError):
    """The request does not fit the current state."""


class NoRoom(ServiceError):
    """The caller's quota has no room for it."""
