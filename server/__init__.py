"""fetchdrive: the WebDAV drive, its HTTP API and web page, and the command line.

Nothing in the project imports the server: `cli` (the `fetchdrive` command, and
`python -m server.cli`) is its whole public face.
"""

__all__ = ["cli"]
