"""The WebDAV side of fetchdrive: per-user spaces, accounts, quota and the view of downloads/.

`__all__` names the modules the server may import; the rest are the provider's own parts
(tests/test_package_surfaces.py holds the rule).
"""

__all__ = [
    "accounts", "dav_storage", "domain", "fast_get", "fast_propfind", "login_throttle", "path_locks", "quota",
    "resources", "spaces",
]
