"""In place of WsgiDAV's directory browser: a GET of a /dav/ folder opens the web drive.

Browsers that follow a folder link (or type `/dav/downloads/`) land on the drive page at
that folder (`/#/downloads/`); WebDAV clients list folders with PROPFIND and never see this.
A HEAD of a folder, which clients send to see that it exists, answers 200 as before.
"""

from __future__ import annotations

from urllib.parse import quote

from wsgidav.mw.base_mw import BaseMiddleware


class FolderToWebDrive(BaseMiddleware):
    def __call__(self, environ, start_response):
        provider = environ.get("wsgidav.provider")
        if environ["REQUEST_METHOD"] in ("GET", "HEAD") and provider is not None:
            resource = provider.get_resource_inst(environ["PATH_INFO"], environ)
            if resource is not None and resource.is_collection:
                if environ["REQUEST_METHOD"] == "HEAD":
                    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0")])
                    return []
                folder = resource.path.strip("/")
                body = b"This folder is shown by the web drive.\n"
                start_response("303 See Other", [("Location", "/#/" + (quote(folder) + "/" if folder else "")),
                                                 ("Content-Type", "text/plain; charset=utf-8"),
                                                 ("Content-Length", str(len(body)))])
                return [body]
        return self.next_app(environ, start_response)
