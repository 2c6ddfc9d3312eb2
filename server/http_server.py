"""cheroot, hardened against slow clients.

cheroot hands a new connection to a worker thread at once, and the worker then blocks until
the whole request head is in. A few hundred clients that connect and stay silent, or send
their heads a byte at a time, would hold every thread of a fixed pool, and nobody else would
be served. Three defences:

- a new connection waits in cheroot's selector, like an idle keep-alive one, until its first
  byte arrives; silent connections cost a file descriptor, not a thread;
- the pool grows while every worker is busy, up to `server.max_threads`, and shrinks back
  to `server.threads` when the rush is over (idle keep-alive connections cost no thread);
- a request head must arrive within `server.header_timeout` seconds, or the connection is
  shut down, which frees its worker.

cheroot also does the TLS handshake in its accept loop, where one silent client stalls every
new connection; `DeferredHandshakeAdapter` leaves the handshake to the first read in the
worker, under the same deadline. Request heads are read by `socket_reader.LineReader`,
responses go out through `socket_writer.DirectWriter`. A plain GET/HEAD of a drive file is
answered right after its head is read, by `fast_files.FastFiles`, when one is given.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time

from cheroot import server as cheroot_server
from cheroot import wsgi
from cheroot.makefile import MakeFile
from cheroot.ssl.builtin import BuiltinSSLAdapter

from server.fast_files import FastFiles
from server.socket_reader import LineReader
from server.socket_writer import DirectWriter

_KEEPER_TICK = 0.5
KEEP_ALIVE_LINGER_MS = 2
_log = logging.getLogger("fetchdrive")


class _HeadDeadlines:
    """Connections whose request head is being read, with the time it must be in by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._deadlines: dict[cheroot_server.HTTPConnection, float] = {}

    def start(self, conn: cheroot_server.HTTPConnection) -> None:
        with self._lock:
            self._deadlines[conn] = time.monotonic() + self.seconds

    def done(self, conn: cheroot_server.HTTPConnection) -> None:
        with self._lock:
            self._deadlines.pop(conn, None)

    def cut_overdue(self) -> None:
        """Shut down connections past their deadline; their blocked reads return at once."""
        now = time.monotonic()
        with self._lock:
            overdue = [conn for conn, deadline in self._deadlines.items() if deadline < now]
            for conn in overdue:
                del self._deadlines[conn]
                with contextlib.suppress(OSError):  # already closed by the client
                    conn.socket.shutdown(socket.SHUT_RDWR)


_PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 63\r\n\r\n"
    b"This server speaks HTTPS only: use an https:// address instead."
)


class _DeadlineRequest(cheroot_server.HTTPRequest):
    def respond(self) -> None:
        with self.conn.wfile.holding():  # a small response leaves in one send
            fast_files: FastFiles | None = self.server.fast_files
            if fast_files is None or not fast_files.answered(self):
                super().respond()

    def send_headers(self) -> None:
        super().send_headers()
        content_type = dict((name.lower(), value) for name, value in self.outheaders).get(b"content-type", b"")
        if content_type.startswith(b"text/event-stream"):
            self.conn.wfile.release()  # each event leaves at once, not when the response ends

    def parse_request(self) -> None:
        deadlines: _HeadDeadlines = self.server.head_deadlines
        deadlines.start(self.conn)
        try:
            if self._tls_handshake_done():
                super().parse_request()
        finally:
            deadlines.done(self.conn)

    def _tls_handshake_done(self) -> bool:
        """Finish a deferred handshake; False (request not ready) when it fails."""
        sock = self.conn.socket
        if not isinstance(sock, ssl.SSLSocket) or self.conn.tls_ready:
            return True
        try:
            sock.do_handshake()
        except (ssl.SSLError, OSError) as error:
            if "http request" in str(error).lower():
                with contextlib.suppress(OSError):
                    socket.socket.sendall(sock, _PLAIN_HTTP_ANSWER)  # on the raw TCP socket
            _log.info("TLS handshake with %s failed: %s", self.conn.remote_addr, error)
            return False
        self.conn.tls_ready = True
        return True


class _DeadlineConnection(cheroot_server.HTTPConnection):
    RequestHandlerClass = _DeadlineRequest
    waited_for_data = False
    tls_ready = False

    def __init__(self, server, sock, makefile=MakeFile) -> None:
        super().__init__(server, sock, makefile)
        # Closing cheroot's own reader and writer releases their hold on the socket (the
        # socket itself stays open).
        self.rfile.close()
        self.rfile = LineReader(sock, "rb", self.rbufsize)
        self.wfile.close()
        self.wfile = DirectWriter(sock, "wb", self.wbufsize)

    def communicate(self) -> bool:
        """Serve requests while the client sends the next one right after an answer.

        cheroot hands a kept-alive connection back to its selector thread after every
        request, and that thread hands it to a worker again when the next request arrives:
        four thread switches per request, each a wait for the GIL. A client that is busy
        sends its next request within `KEEP_ALIVE_LINGER_MS`; this worker serves it at once.
        A quiet connection still goes back to the selector, so it costs no thread.
        """
        while super().communicate():
            if not (self.server.ready and self._next_request_soon()):
                return True
        return False

    def _next_request_soon(self) -> bool:
        if self.rfile.has_data() or (isinstance(self.socket, ssl.SSLSocket) and self.socket.pending()):
            return True
        poll = select.poll()
        poll.register(self.socket, select.POLLIN)
        return bool(poll.poll(KEEP_ALIVE_LINGER_MS))


class DeferredHandshakeAdapter(BuiltinSSLAdapter):
    """TLS whose handshake happens on the worker's first read, not in the accept loop."""

    def wrap(self, sock: socket.socket):
        # No cipher details in the environ: they are not known before the handshake.
        wrapped = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        return wrapped, {"wsgi.url_scheme": "https", "HTTPS": "on"}


class ElasticServer(wsgi.Server):
    """A cheroot WSGI server whose pool grows under load and whose request heads have a deadline."""

    ConnectionClass = _DeadlineConnection
    # Idle kept-alive connections cost a file descriptor, not a thread; cheroot's limit of
    # 10 made every client beyond the tenth reconnect for each request.
    keep_alive_conn_limit = 1024

    def __init__(self, bind_addr, app, *, threads: int, max_threads: int, timeout: int,
                 header_timeout: float, server_name: str, fast_files: FastFiles | None = None) -> None:
        # A deep listen backlog: cheroot's default of 5 drops connections in a burst.
        super().__init__(bind_addr, app, numthreads=threads, max=max_threads, timeout=timeout,
                         server_name=server_name, request_queue_size=1024)
        self.head_deadlines = _HeadDeadlines(header_timeout)
        self.fast_files = fast_files
        self._pool_needed = threading.Event()
        self._keeper_stop = threading.Event()

    def process_conn(self, conn: _DeadlineConnection) -> None:
        if not conn.waited_for_data:
            conn.waited_for_data = True
            self._connections.put(conn)
            return
        super().process_conn(conn)
        if self.requests.idle == 0:
            self._pool_needed.set()

    def prepare(self) -> None:
        super().prepare()
        threading.Thread(target=self._keep, name="pool keeper", daemon=True).start()

    def stop(self) -> None:
        self._keeper_stop.set()
        self._end_select_wait()
        super().stop()

    def _end_select_wait(self) -> None:
        """cheroot's selector loop looks at its stop flag only when its select() returns, after
        up to `expiration_interval` (half a second) on an idle server; a connection to our own
        socket, made after the flag is set, ends that wait at once."""
        listening = self.socket
        if listening is None:
            return
        self._connections._stop_requested = True  # what cheroot's ConnectionManager.stop() sets first
        with contextlib.suppress(OSError):
            socket.create_connection(listening.getsockname()[:2], timeout=1).close()

    def _keep(self) -> None:
        pool = self.requests
        while not self._keeper_stop.is_set():
            if self._pool_needed.wait(_KEEPER_TICK):
                self._pool_needed.clear()
                pool.grow(pool.min)
            elif pool.idle > pool.min:
                pool.shrink(pool.idle - pool.min)
            self.head_deadlines.cut_overdue()
