"""One HTTP/1.1 request over a plain socket, for bytes that HTTP libraries refuse to send
(undecodable paths, non-ASCII header values, huge headers), telling a dropped connection
apart from an answer."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class DroppedConnection(AssertionError):
    """The server closed the connection without a complete answer."""


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # names lower-case
    body: bytes


def raw_request(base_url: str, method: str, path: bytes, headers: dict[str, bytes] | None = None,
                body: bytes = b"", timeout: float = 30, declared_length: int | None = None) -> RawAnswer:
    """`declared_length`: announce that many body bytes, send only `body`, and end the
    stream there, as a client that went away mid-upload (the answer then shows that the
    server has read the request to the cut)."""
    parts = urlsplit(base_url)
    lines = [method.encode() + b" " + path + b" HTTP/1.1", f"Host: {parts.netloc}".encode(), b"Connection: close"]
    lines += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    if body or declared_length is not None:
        lines.append(f"Content-Length: {len(body) if declared_length is None else declared_length}".encode())
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as connection:
        connection.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        if declared_length is not None:
            connection.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := connection.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, separator, rest = received.partition(b"\r\n\r\n")
    if not separator or not head.startswith(b"HTTP/1.1 "):
        raise DroppedConnection(f"{method} {path!r}: no answer, got {received[:200]!r}")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    length = answer_headers.get("content-length")
    if length is not None and len(rest) < int(length) and method != "HEAD":
        raise DroppedConnection(f"{method} {path!r}: answer cut short ({len(rest)} of {length} bytes)")
    return RawAnswer(int(status_line.split()[1]), answer_headers, rest)
