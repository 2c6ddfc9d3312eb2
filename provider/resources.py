"""Files and folders of a user's space, extending WsgiDAV's filesystem resources.

What they add: ref URLs that carry the user (locks and dead properties are per user),
atomic PUTs with quota, quota bookkeeping on DELETE/COPY/MOVE, a `downloads/` folder that
cannot be deleted or moved, and notices to the downloads engine when a trigger file is
complete, unlocked and non-empty, or goes away.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
from wsgidav.dav_provider import DAVNonCollection
from wsgidav.fs_dav_provider import FileResource, FolderResource

from provider.quota import tree_size
from provider.upload import AtomicUpload

if TYPE_CHECKING:
    from provider.spaces import SpacesProvider

def user_ref_url(share_path: str, user: str, path: str) -> str:
    """The lock and property key of `path` in `user`'s space."""
    return quote(share_path + "/" + user + path)


class SpaceResourceMixin:
    """What files and folders of a space share."""

    provider: SpacesProvider
    path: str
    environ: dict
    _file_path: str

    @property
    def user(self) -> str:
        return self.environ["wsgidav.auth.user_name"]

    def get_ref_url(self) -> str:
        return user_ref_url(self.provider.share_path, self.user, self.get_preferred_path())

    def _refuse_protected(self, path: str, action: str) -> None:
        if self.provider.is_protected(path):
            raise DAVError(HTTP_FORBIDDEN, f"{path or '/'} cannot be {action}: the downloads folder always exists")

    def handle_delete(self):
        self._refuse_protected(self.path, "deleted")
        return False

    def handle_move(self, dest_path):
        self._refuse_protected(self.path, "moved")
        self._refuse_protected(dest_path, "replaced")
        return False

    def handle_copy(self, dest_path, *, depth_infinity):
        self._refuse_protected(dest_path, "replaced")
        return False


class SpaceFile(SpaceResourceMixin, FileResource):
    """A regular file of a user's space (or, while its first PUT streams in, one to be)."""

    def __init__(self, path: str, environ: dict, file_path: str, *, pending: bool = False) -> None:
        if pending:
            # Nothing on disk until the body is complete: a crash mid-PUT leaves no empty file.
            DAVNonCollection.__init__(self, path, environ)
            self._file_path = file_path
            self.name = os.path.basename(file_path)
            self.file_stat = os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0))
        else:
            super().__init__(path, environ, file_path)
        self._upload: AtomicUpload | None = None

    def begin_write(self, *, content_type=None):
        self._upload = AtomicUpload(
            target=Path(self._file_path),
            temp_dir=self.provider.upload_temp_dir,
            user=self.user,
            quota=self.provider.quota,
            environ=self.environ,
        )
        return self._upload

    def end_write(self, *, with_errors):
        upload, self._upload = self._upload, None
        if with_errors or upload is None:
            if upload is not None:
                upload.discard()
            return
        self.provider.quota.charge(self.user, upload.commit())
        self.file_stat = os.stat(self._file_path)
        self.provider.file_arrived(self.path, self.environ)

    def delete(self):
        self._refuse_protected(self.path, "deleted")
        size = self.file_stat.st_size
        super().delete()
        self.provider.quota.charge(self.user, -size)
        self.provider.path_left(self.path, self.environ)

    def copy_move_single(self, dest_path, *, is_move):
        dest_file = self.provider._loc_to_file_path(dest_path, self.environ)
        try:
            replaced = os.stat(dest_file).st_size
        except FileNotFoundError:
            replaced = 0
        size = self.file_stat.st_size
        if not is_move:
            self.provider.quota.check_room(self.user, size - replaced)
        # Copy under a temporary name and rename, so a failed copy leaves the target intact.
        fd, temp = tempfile.mkstemp(dir=self.provider.upload_temp_dir, prefix="copy-")
        os.close(fd)
        try:
            shutil.copy2(self._file_path, temp)
            os.replace(temp, dest_file)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        self._copy_dead_properties(dest_path, is_move=is_move)
        self.provider.quota.charge(self.user, size - replaced)
        self.provider.file_arrived(dest_path, self.environ)

    def _copy_dead_properties(self, dest_path: str, *, is_move: bool) -> None:
        prop_manager = self.provider.prop_manager
        dest = self.provider.get_resource_inst(dest_path, self.environ)
        if not prop_manager or dest is None:
            return
        if is_move:
            prop_manager.move_properties(self.get_ref_url(), dest.get_ref_url(), with_children=False)
        else:
            prop_manager.copy_properties(self.get_ref_url(), dest.get_ref_url())

    def move_recursive(self, dest_path):
        super().move_recursive(dest_path)
        self.provider.path_left(self.path, self.environ)
        self.provider.file_arrived(dest_path, self.environ)


class SpaceFolder(SpaceResourceMixin, FolderResource):
    """A folder of a user's space; in `downloads/` it also lists `.part` placeholders."""

    def get_used_bytes(self) -> int:
        return self.provider.quota.used(self.user)

    def get_available_bytes(self) -> int | None:
        return self.provider.quota.available(self.user)

    def get_member_names(self) -> list[str]:
        names = super().get_member_names()
        if self.provider.in_downloads(self.path):
            present = set(names)
            names += [name for name in self.provider.placeholders(self.path, self.environ) if name not in present]
        return names

    def create_empty_resource(self, name):
        if self.environ.get("REQUEST_METHOD") != "PUT":
            return super().create_empty_resource(name)  # LOCK on an unmapped URL: RFC 4918 wants a file
        path = self.path.rstrip("/") + "/" + name
        return SpaceFile(path, self.environ, self.provider._loc_to_file_path(path, self.environ), pending=True)

    def delete(self):
        self._refuse_protected(self.path, "deleted")
        size = tree_size(self._file_path)
        super().delete()
        self.provider.quota.charge(self.user, -size)
        self.provider.path_left(self.path, self.environ)

    def move_recursive(self, dest_path):
        super().move_recursive(dest_path)
        self.provider.path_left(self.path, self.environ)
        self.provider.tree_arrived(dest_path, self.environ)
