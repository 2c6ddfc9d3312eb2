"""The WsgiDAV provider: every request is rooted at the authenticated user's own space.

`storage.root/spaces/<user>/` is what `/dav/` shows to `<user>`. Paths are mapped with
`_loc_to_file_path` (WsgiDAV's hook for per-user roots), refusing `.`/`..` segments, NUL
bytes and anything whose real path leaves the space (symlinks). The Destination header of
COPY/MOVE goes through the same mapping, so it can only name the same user's space.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path
from urllib.parse import unquote

from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, HTTP_REQUEST_URI_TOO_LONG, DAVError
from wsgidav.fs_dav_provider import BUFFER_SIZE, FilesystemProvider

from engine.events import EventLog
from engine.socket_splice import splice_supported
from engine.triggers import is_trigger_name
from provider.downloads_view import DownloadsHooks, PartResource, Placeholder
from provider.path_locks import PathLocks
from provider.quota import Quota
from provider.resources import LOCK_ROOT_LOOKUP, SpaceFile, SpaceFolder, refuse_unlistable_name, user_ref_url
from provider.space_writer import SpaceWriter

DOWNLOADS = "downloads"
_PROTECTED = {"", f"/{DOWNLOADS}"}
_DELETED_KEY = "fetchdrive.deleted_paths"


class SpacesProvider(FilesystemProvider):
    """Serves `spaces/<user>/` of whoever authenticated."""

    def __init__(self, spaces_root: Path, temp_root: Path, quota: Quota, path_locks: PathLocks, *, node: str,
                 body_timeout: float, min_free: int | None) -> None:
        """`node`: this node's name (server.node); `body_timeout`: how long a request body may
        stall (server.timeout); `min_free`: the disk's reserve (storage.min_free)."""
        spaces_root.mkdir(parents=True, exist_ok=True)
        super().__init__(str(spaces_root), readonly=False, fs_opts={"follow_symlinks": False})
        self.spaces_root = Path(os.path.realpath(spaces_root))
        # A folder per node: other nodes sharing the storage root have uploads in progress.
        self.upload_temp_dir = temp_root / "uploads" / node
        # No upload of this node is in progress at start: what is here was cut off by a crash.
        shutil.rmtree(self.upload_temp_dir, ignore_errors=True)
        self.upload_temp_dir.mkdir(parents=True, exist_ok=True)
        self.splice_timeout = body_timeout if splice_supported(self.upload_temp_dir) else None
        self.quota = quota
        self.writer = SpaceWriter(quota, path_locks, self.upload_temp_dir, self.space_root, min_free,
                                  self._forget_properties)
        self.hooks: DownloadsHooks | None = None
        self.events: EventLog | None = None
        self._prepared: dict[str, str] = {}  # user -> their folder, as text

    # --- spaces and paths -------------------------------------------------

    def space_root(self, user: str) -> Path:
        """The user's folder, created with its `downloads/` on first use."""
        root = self.spaces_root / user
        if user not in self._prepared:
            (root / DOWNLOADS).mkdir(parents=True, exist_ok=True)
            self._prepared[user] = str(root)
        return root

    def _loc_to_file_path(self, path: str, environ: dict | None = None) -> str:
        user = (environ or {}).get("wsgidav.auth.user_name")
        if not user:
            raise DAVError(HTTP_FORBIDDEN, "no authenticated user")
        parts = [part for part in path.split("/") if part]
        for part in parts:
            if part in (".", "..") or "\0" in part:
                raise DAVError(HTTP_BAD_REQUEST, f"path segment {part!r} is not allowed")
        # Every request maps a path: the prepared folder's text, without pathlib.
        root = self._prepared.get(user) or str(self.space_root(user))
        folder = root
        # No symlink in any folder on the way: then the real path stays inside the space.
        # (One lstat per folder, instead of realpath's walk from `/`.)
        for part in parts[:-1]:
            folder = os.path.join(folder, part)
            try:
                if stat.S_ISLNK(os.lstat(folder).st_mode):
                    raise DAVError(HTTP_FORBIDDEN, "path leaves the user's space")
            except (FileNotFoundError, NotADirectoryError):
                break
        return os.path.join(root, *parts)

    def get_resource_inst(self, path: str | None, environ: dict):
        if path is None:
            # WsgiDAV's util.get_uri_parent() strips white space: a PUT or MKCOL of a name of
            # control characters alone in the root (`/%09`) asks for the parent of nothing.
            refuse_unlistable_name(environ["PATH_INFO"])
            return None
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self._resource(path, environ)
        # Read-only requests look the same path up more than once (directory browser, then
        # the GET itself): once is enough.
        looked_up = environ.setdefault("fetchdrive.resources", {})
        if path not in looked_up:
            looked_up[path] = self._resource(path, environ)
        return looked_up[path]

    def _resource(self, path: str, environ: dict):
        self._count_get_resource_inst += 1
        file_path = self._loc_to_file_path(path, environ)
        try:
            info = os.lstat(file_path)
        except (FileNotFoundError, NotADirectoryError):
            if environ.get(LOCK_ROOT_LOOKUP):
                return SpaceFile(path, environ, file_path, None)  # only its href is wanted
            return self._placeholder_resource(path, environ)
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                raise DAVError(HTTP_REQUEST_URI_TOO_LONG, "file name too long (at most 255 bytes)") from None
            raise
        if stat.S_ISDIR(info.st_mode):
            return SpaceFolder(path, environ, file_path, info)
        if stat.S_ISREG(info.st_mode):
            if environ.get("REQUEST_METHOD") == "GET" and path == environ.get("PATH_INFO"):
                return self._opened_file(path, environ, file_path)
            return SpaceFile(path, environ, file_path, info)
        return None  # symlinks, sockets, devices: not part of a space

    @staticmethod
    def _opened_file(path: str, environ: dict, file_path: str) -> SpaceFile | None:
        """The target of a GET, opened before its headers are made (see `SpaceFile`)."""
        try:
            content = open(file_path, "rb", BUFFER_SIZE)
        except (FileNotFoundError, IsADirectoryError):
            return None  # deleted or replaced by a folder since the lstat: gone for this GET
        return SpaceFile(path, environ, file_path, os.fstat(content.fileno()), content)

    def _forget_properties(self, user: str, file_path: str) -> None:
        """Remove the dead properties of the removed file or folder at `file_path` and of what
        it held (the space writer calls it under the removal's path lock)."""
        if self.prop_manager:
            path = os.path.relpath(file_path, self.space_root(user)).replace(os.sep, "/")
            self.prop_manager.remove_properties_under(user_ref_url(self.share_path, user, "/" + path))

    def deleted_in_request(self, path: str, environ: dict) -> None:
        """Note a path this request deleted; see `exists`."""
        environ.setdefault(_DELETED_KEY, set()).add(path)

    def exists(self, path: str, environ: dict) -> bool:
        # WsgiDAV looks again after a DELETE to see that it worked; a file another client
        # PUT there in between is not this DELETE failing.
        if path in environ.get(_DELETED_KEY, ()):
            return False
        return super().exists(path, environ)

    # --- the downloads folder ---------------------------------------------

    @staticmethod
    def is_protected(path: str) -> bool:
        return path.rstrip("/") in _PROTECTED

    @staticmethod
    def in_downloads(path: str) -> bool:
        trimmed = path.rstrip("/")
        return trimmed == f"/{DOWNLOADS}" or trimmed.startswith(f"/{DOWNLOADS}/")

    def placeholders(self, folder_path: str, environ: dict) -> dict[str, Placeholder]:
        """The folder's placeholders by name, read once per request: a Depth 1 PROPFIND
        looks up every member by name, which would otherwise query the engine per entry."""
        if self.hooks is None:
            return {}
        folder = folder_path.strip("/")
        per_request = environ.setdefault("fetchdrive.placeholders", {})
        if folder not in per_request:
            listed = self.hooks.placeholders(environ["wsgidav.auth.user_name"], folder)
            per_request[folder] = {placeholder.name: placeholder for placeholder in listed}
        return per_request[folder]

    def _placeholder_resource(self, path: str, environ: dict) -> PartResource | None:
        folder, _, name = path.rstrip("/").rpartition("/")
        if not self.in_downloads(folder):
            return None
        placeholder = self.placeholders(folder, environ).get(name)
        return PartResource(path, environ, placeholder) if placeholder else None

    def file_arrived(self, path: str, environ: dict) -> None:
        """Tell the engine about a trigger once it is complete, unlocked and non-empty."""
        name = path.rstrip("/").rpartition("/")[2]
        if self.hooks is None or not self.in_downloads(path) or not is_trigger_name(name):
            return
        user = environ["wsgidav.auth.user_name"]
        try:
            if os.stat(self._loc_to_file_path(path, environ)).st_size == 0:
                return  # Finder and Explorer create an empty file first, then PUT the content
        except FileNotFoundError:
            return
        if self.lock_manager and self.lock_manager.is_url_locked(user_ref_url(self.share_path, user, path)):
            return  # acted on at UNLOCK
        self.hooks.trigger_ready(user, path.strip("/"))

    def tree_arrived(self, path: str, environ: dict) -> None:
        if not self.in_downloads(path):
            return
        root = self._loc_to_file_path(path, environ)
        for folder, _dirs, files in os.walk(root):
            relative = os.path.relpath(folder, root)
            for name in files:
                sub = path.rstrip("/") + ("" if relative == "." else "/" + relative.replace(os.sep, "/"))
                self.file_arrived(f"{sub}/{name}", environ)

    def announce(self, environ: dict, kind: str, path: str, **details: str | bool) -> None:
        """A `file.*` live event (engine.events) for the requesting user."""
        if self.events is not None:
            clean = {key: "/".join(filter(None, str(value).split("/"))) if key in ("path", "to") else value
                     for key, value in {"path": path, **details}.items()}
            self.events.publish(environ["wsgidav.auth.user_name"], f"file.{kind}", clean)

    def path_left(self, path: str, environ: dict) -> None:
        if self.hooks is not None and self.in_downloads(path):
            self.hooks.path_removed(environ["wsgidav.auth.user_name"], path.strip("/"))

    def _split_ref_url(self, ref_url: str) -> tuple[str, str]:
        """Invert `user_ref_url`: (user, path in the space)."""
        key = unquote(ref_url)
        prefix = self.share_path + "/"
        user, _, rest = key[len(prefix) :].partition("/") if key.startswith(prefix) else ("", "", "")
        return user, "/" + rest

    def ref_url_owner(self, ref_url: str) -> str:
        """The user in whose space `ref_url` lies."""
        return self._split_ref_url(ref_url)[0]

    def ref_url_to_path(self, ref_url: str) -> str:
        return self._split_ref_url(ref_url)[1]

    def lock_released(self, ref_url: str) -> None:
        """Called by the lock manager after UNLOCK: a trigger that waited for it may now run."""
        user, path = self._split_ref_url(ref_url)
        if user:
            self.file_arrived(path, {"wsgidav.auth.user_name": user})
