"""The WebDAV side of fetchdrive: per-user spaces, accounts, quota and the view of downloads/."""
