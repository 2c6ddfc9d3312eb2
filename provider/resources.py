"""Files and folders of a user's space, extending WsgiDAV's filesystem resources.

What they add: ref URLs that carry the user (locks and dead properties are per user),
a `downloads/` folder that cannot be deleted or moved, and notices to the downloads engine
when a trigger file is complete, unlocked and non-empty, or goes away. Every change on disk
(atomic PUTs, DELETE, COPY, MOVE, MKCOL, times), with its quota booking, is made by the
provider's space writer (provider/space_writer.py), never by WsgiDAV's filesystem code, and
so is every change of dead properties: a PROPPATCH under its resource's path lock, the
properties a COPY, MOVE or DELETE takes along under that change's locks (issue 13: made after
them, a PROPPATCH racing a MOVE or DELETE of a folder above left its property where no file
was, counted in the quota, and a MOVE's properties could overwrite a PROPPATCH's).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote, unquote

from wsgidav import util
from wsgidav.dav_error import (HTTP_BAD_REQUEST, HTTP_CONFLICT, HTTP_FORBIDDEN, HTTP_NOT_FOUND, HTTP_PRECONDITION_FAILED,
                               DAVError)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection
from wsgidav.fs_dav_provider import FileResource, FolderResource

from engine.naming import client_name_problem, xml_safe_name
from provider.space_writer import Then
from provider.upload import AtomicUpload

LOCK_ROOT_LOOKUP = "fetchdrive.lock_root_lookup"

if TYPE_CHECKING:
    from provider.spaces import SpacesProvider

def file_etag(info: os.stat_result) -> str:
    """A strong ETag: a replaced file has a new inode, a rewritten one a new mtime or size."""
    return f"{info.st_ino}-{info.st_mtime_ns}-{info.st_size}"


def user_ref_url(share_path: str, user: str, path: str) -> str:
    """The lock and property key of `path` in `user`'s space."""
    return quote(share_path + "/" + user + path)


def refuse_unlistable_name(path: str) -> None:
    """400 for a new entry whose name no listing could show (see `engine.naming`)."""
    problem = client_name_problem(path.rstrip("/").rpartition("/")[2])
    if problem:
        raise DAVError(HTTP_BAD_REQUEST, problem)


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

    def get_property_value(self, name):
        if name != "{DAV:}lockdiscovery":
            return super().get_property_value(name)
        # WsgiDAV looks up each lock's root again to print its href. A root another client
        # deleted a moment ago must still print, not fail the LOCK that just succeeded.
        self.environ[LOCK_ROOT_LOOKUP] = True
        try:
            return super().get_property_value(name)
        finally:
            del self.environ[LOCK_ROOT_LOOKUP]

    def set_property_value(self, name, value, *, dry_run=False):
        if dry_run:
            return super().set_property_value(name, value, dry_run=True)
        try:
            return self.provider.writer.change_properties(
                self._file_path, partial(super().set_property_value, name, value, dry_run=False))
        except FileNotFoundError:
            raise DAVError(HTTP_NOT_FOUND, f"{self.path} was moved or deleted meanwhile") from None

    def get_display_name(self) -> str:
        return xml_safe_name(super().get_display_name())

    def _refuse_protected(self, path: str, action: str) -> None:
        if self.provider.is_protected(path):
            raise DAVError(HTTP_FORBIDDEN, f"{path or '/'} cannot be {action}: the downloads folder always exists")

    def handle_delete(self):
        self._refuse_protected(self.path, "deleted")
        return False

    def _refuse_unlistable_destination(self) -> None:
        # The header as sent: WsgiDAV's urlparse drops tabs and line breaks from the path.
        refuse_unlistable_name(unquote(self.environ.get("HTTP_DESTINATION", "")).replace("/", ""))

    def handle_move(self, dest_path):
        self._refuse_protected(self.path, "moved")
        self._refuse_protected(dest_path, "replaced")
        self._refuse_unlistable_destination()
        return False

    def handle_copy(self, dest_path, *, depth_infinity):
        self._refuse_protected(dest_path, "replaced")
        self._refuse_unlistable_destination()
        return False

    def set_last_modified(self, dest_path, time_stamp, *, dry_run):
        """Win32LastModifiedTime and the like: on this user's file alone (see own_copy)."""
        seconds = time_stamp if isinstance(time_stamp, int) else util.parse_time_string(time_stamp)
        if not dry_run:
            try:
                self.provider.writer.set_times(self._file_path, seconds)
            except FileNotFoundError:
                raise DAVError(HTTP_NOT_FOUND, f"{self.path} was deleted meanwhile") from None
        return True

    def _move_on_disk(self, dest_path: str) -> None:
        dest_file = self.provider._loc_to_file_path(dest_path, self.environ)
        try:
            self.provider.writer.move(self.user, self._file_path, dest_file,
                                      then=self._properties_along(dest_path, is_move=True,
                                                                  with_children=self.is_collection))
        except FileNotFoundError:
            raise DAVError(HTTP_NOT_FOUND, f"{self.path} was moved or deleted meanwhile") from None
        except FileExistsError:
            raise DAVError(HTTP_PRECONDITION_FAILED, f"{dest_path} was created meanwhile") from None

    def _properties_along(self, dest_path: str, *, is_move: bool, with_children: bool = False) -> Then:
        """For the space writer to run under the locks of a COPY or MOVE to `dest_path`: the
        dead properties there become this resource's (`with_children`: and those of what it
        holds, for a folder's MOVE in one rename)."""
        # WsgiDAV's COPY onto an existing folder names its members "dest//name".
        normal = "/".join(filter(None, dest_path.split("/")))
        dest = user_ref_url(self.provider.share_path, self.user,
                            f"/{normal}/" if self.is_collection and normal else f"/{normal}")
        if is_move:
            return partial(self.provider.prop_manager.move_properties, self.get_ref_url(), dest,
                           with_children=with_children)
        return partial(self.provider.prop_manager.copy_properties, self.get_ref_url(), dest)

    def _delete_on_disk(self) -> None:
        """DELETE this file or folder; the writer removes its dead properties with it."""
        self._refuse_protected(self.path, "deleted")
        if not self.provider.writer.delete(self.user, self._file_path):
            raise DAVError(HTTP_NOT_FOUND, f"{self.path} was deleted meanwhile")


class SpaceFile(SpaceResourceMixin, FileResource):
    """A regular file of a user's space (or, while its first PUT streams in, one to be).

    Size, dates and ETag all come from the one stat the resource is made with. For a GET the
    provider opens the file first and takes that stat from the open file, so a file another
    client replaces or deletes meanwhile is still served whole, as the version the headers
    describe. Changes that replace a file take its path lock (see `path_locks`).
    """

    def __init__(self, path: str, environ: dict, file_path: str, info: os.stat_result | None,
                 content: BinaryIO | None = None) -> None:
        DAVNonCollection.__init__(self, path, environ)
        self._file_path = file_path
        self.name = os.path.basename(file_path)
        # No `info`: a new file, with nothing on disk until its body is complete (a crash
        # mid-PUT leaves no empty file).
        self.file_stat = info or os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, 0, 0, 0))
        self._content = content
        self._upload: AtomicUpload | None = None
        self._new_entries = 0

    def get_etag(self) -> str:
        return file_etag(self.file_stat)

    def get_content(self):
        if self._content is not None:
            content, self._content = self._content, None
            return content
        return super().get_content()

    def begin_write(self, *, content_type=None):
        # A new file's place in storage.max_files is booked before its body arrives.
        self._new_entries = self.provider.writer.book_entry(self.user, self._file_path)
        try:
            self._upload = self._start_upload()
        except BaseException:
            self._give_back_entries()
            raise
        return self._upload

    def _give_back_entries(self) -> None:
        self.provider.writer.give_back_entries(self.user, self._new_entries)
        self._new_entries = 0

    def _start_upload(self) -> AtomicUpload:
        return self.provider.writer.upload(self.user, Path(self._file_path), self.environ, self.provider.splice_timeout)

    def end_write(self, *, with_errors):
        upload, self._upload = self._upload, None
        if with_errors or upload is None:
            if upload is not None:
                upload.discard()
                self._give_back_entries()
            return
        created = self.file_stat.st_ino == 0
        try:
            self.file_stat = upload.commit()
        except BaseException as error:
            upload.discard()
            self._give_back_entries()
            if isinstance(error, (FileNotFoundError, NotADirectoryError)):
                raise DAVError(HTTP_CONFLICT, f"the folder of {self.path} was moved or deleted meanwhile; "
                                              "the file was not stored") from None
            raise
        self.provider.announce(self.environ, "created" if created else "changed", self.path)
        self.provider.file_arrived(self.path, self.environ)

    def delete(self):
        self._delete_on_disk()
        self.provider.deleted_in_request(self.path, self.environ)
        self.remove_all_locks(recursive=True)
        self.provider.announce(self.environ, "deleted", self.path)
        self.provider.path_left(self.path, self.environ)

    def copy_move_single(self, dest_path, *, is_move):
        dest_file = self.provider._loc_to_file_path(dest_path, self.environ)
        try:
            existed = self.provider.writer.copy_file(self.user, self._file_path, dest_file, self.file_stat.st_size,
                                                     then=self._properties_along(dest_path, is_move=is_move))
        except FileNotFoundError:
            raise DAVError(HTTP_NOT_FOUND, f"{self.path} was deleted meanwhile") from None
        self.provider.announce(self.environ, "changed" if existed else "created", dest_path)
        self.provider.file_arrived(dest_path, self.environ)

    def move_recursive(self, dest_path):
        self._move_on_disk(dest_path)
        self.provider.announce(self.environ, "moved", self.path, to=dest_path)
        self.provider.path_left(self.path, self.environ)
        self.provider.file_arrived(dest_path, self.environ)


class SpaceFolder(SpaceResourceMixin, FolderResource):
    """A folder of a user's space; in `downloads/` it also lists `.part` placeholders."""

    def __init__(self, path: str, environ: dict, file_path: str, info: os.stat_result) -> None:
        # The stat the provider found the folder with: WsgiDAV's second one may find it moved
        # away by another client already, and fail the request with a 500.
        DAVCollection.__init__(self, path, environ)
        self._file_path = file_path
        self.file_stat = info
        self.fs_opts = self.provider
        self.name = os.path.basename(file_path)

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

    def get_member_list(self) -> list:
        # WsgiDAV asserts that every listed name is still there; a client may remove one while
        # a MOVE or DELETE of this folder looks at its members.
        return [member for name in self.get_member_names() if (member := self.get_member(name)) is not None]

    def create_empty_resource(self, name):
        refuse_unlistable_name(name)
        path = self.path.rstrip("/") + "/" + name
        file_path = self.provider._loc_to_file_path(path, self.environ)
        if self.environ.get("REQUEST_METHOD") == "PUT":
            return SpaceFile(path, self.environ, file_path, None)
        # A LOCK on an unmapped URL: RFC 4918 wants an empty file. Exclusive create, as
        # WsgiDAV's truncating one would empty a file another client just put there.
        self.provider.writer.create_empty(self.user, file_path)
        try:
            info = os.lstat(file_path)
        except FileNotFoundError:
            info = None  # another client deleted it already; the lock is on the URL all the same
        return SpaceFile(path, self.environ, file_path, info)

    def create_collection(self, name):
        refuse_unlistable_name(name)
        path = self.path.rstrip("/") + "/" + name
        self.provider.writer.make_folder(self.user, self.provider._loc_to_file_path(path, self.environ))
        self.provider.announce(self.environ, "created", path, folder=True)

    def copy_move_single(self, dest_path, *, is_move):
        dest_file = self.provider._loc_to_file_path(dest_path, self.environ)
        # WsgiDAV copies a folder's members one by one after this.
        self.provider.writer.make_folder(self.user, dest_file, like=self._file_path,
                                         then=self._properties_along(dest_path, is_move=is_move))
        self.provider.announce(self.environ, "created", dest_path, folder=True)

    def delete(self):
        self._delete_on_disk()
        self.remove_all_locks(recursive=True)
        self.provider.announce(self.environ, "deleted", self.path, folder=True)
        self.provider.path_left(self.path, self.environ)

    def move_recursive(self, dest_path):
        self._move_on_disk(dest_path)
        self.provider.announce(self.environ, "moved", self.path, to=dest_path, folder=True)
        self.provider.path_left(self.path, self.environ)
        self.provider.tree_arrived(dest_path, self.environ)
