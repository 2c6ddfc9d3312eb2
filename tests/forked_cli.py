"""Runs `fetchdrive` commands and servers as real processes without paying Python's start-up for each.

A `python -m server.cli` process spends most of its start importing the app (0.5 s of CPU,
1 to 5 s of waiting on a busy CI machine), and the tests start some 250 servers and run
dozens of commands. Here one helper process per test worker imports the app once and forks a
child for each: a process of its own, with its own environment, working folder, standard
input, output and error (files, dup'ed onto fds 0, 1 and 2), signals and exit status, as after
`python -m server.cli ARGS`; only the imports are done before it starts. The helper has no
threads when it forks: one loop reads requests and reaps ended children.
`ForkedProcess` is the child as the tests see it, with the part of `subprocess.Popen` they use.

Process ids are reused within a run: the kernel's limit here is 32,768, and a run's servers,
threads and browsers take some 25,000. So a child's exit status is filed under
a number of its own, not under its pid, and the tests signal a child through a pidfd, which
always names that process. The helper files a status before it reaps the child (until then
the pid stays taken), so a pidfd opened while no status is filed is the child's.

What a fork cannot show (how the interpreter starts: `PYTHON*` variables, what a run imports)
still runs as `python -m server.cli`: `ServerProcess(..., forked=False)` and the `serve` tests
of tests/test_cli_and_config.py.

Run as `python -m tests.forked_cli`, the module is that helper: one JSON request a line on
stdin, one JSON answer (the child's pid and status file) a line on stdout; the child's exit
status is written whole to that file when it ends.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_helper: subprocess.Popen | None = None
_helper_lock = threading.Lock()  # one request and its answer at a time (tests start nodes from threads)


class ForkedProcess:
    """A child of the helper: its pid, signals sent to it through a pidfd, its exit status as
    `Popen.returncode` gives it (minus the signal's number if one ended it)."""

    def __init__(self, pid: int, status_file: Path) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._status_file = status_file
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # reaped already, so its status is filed
            self._pidfd = None
        # A status filed already: the pidfd may name a process that took the pid since; poll closes it.
        self.poll()

    def poll(self) -> int | None:
        if self.returncode is None and self._status_file.exists():
            self.returncode = int(self._status_file.read_text())
            self._status_file.unlink()
            self._close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["fetchdrive"], timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, number: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # reaped since: its status is filed
                signal.pidfd_send_signal(self._pidfd, number)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _close(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def __del__(self) -> None:
        self._close()


def start(args: list[str], *, env: dict[str, str], stdout: Path, stdin: Path | None = None,
          stderr: Path | None = None) -> ForkedProcess:
    """`fetchdrive ARGS...` started in a forked child with exactly `env` as its environment,
    its output appended to `stdout` and its errors to `stderr` (or to `stdout` if None)."""
    global _helper
    for stream in (stdout, stderr or stdout):
        stream.touch()  # there at once, as Popen's would be
    request = {"args": args, "env": env, "cwd": str(REPO), "stdin": str(stdin) if stdin else os.devnull,
               "stdout": str(stdout), "stderr": str(stderr or stdout)}
    with _helper_lock:
        if _helper is None or _helper.poll() is not None:
            _helper = subprocess.Popen([sys.executable, "-m", "tests.forked_cli"], cwd=REPO, stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        _helper.stdin.write(json.dumps(request) + "\n")
        _helper.stdin.flush()
        answer = json.loads(_helper.stdout.readline())
    return ForkedProcess(answer["pid"], Path(answer["status_file"]))


def fetchdrive(*args: str, input: str | None = None, env: dict | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """`fetchdrive ARGS...` in a forked process, with `env` added to this environment and
    `input` on its standard input; its output, as `subprocess.run(..., capture_output=True,
    text=True)` gives it. Raises subprocess.TimeoutExpired (the child killed) after `timeout`."""
    with tempfile.TemporaryDirectory() as folder:
        streams = {name: Path(folder) / name for name in ("stdin", "stdout", "stderr")}
        streams["stdin"].write_text(input or "")
        child = start(list(args), env={**os.environ, **(env or {})}, **streams)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise subprocess.TimeoutExpired(["fetchdrive", *args], timeout, streams["stdout"].read_text(),
                                            streams["stderr"].read_text()) from None
        output, errors = (streams[name].read_text(errors="replace") for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(["fetchdrive", *args], child.returncode, output, errors)


def _child(request: dict) -> None:
    """In the forked child: become `python -m server.cli ARGS` and never return."""
    from server.cli import main

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # Ctrl-C raises KeyboardInterrupt, as in a `python -m server.cli` started from a terminal,
    # even where the test run itself was started in the background (a shell's `&` makes it,
    # and so the helper, ignore SIGINT; `sync --watch` is stopped with it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    streams = (os.open(request["stdin"], os.O_RDONLY),
               os.open(request["stdout"], os.O_WRONLY | os.O_APPEND | os.O_CREAT),
               os.open(request["stderr"], os.O_WRONLY | os.O_APPEND | os.O_CREAT))
    for source, target in zip(streams, (0, 1, 2)):
        os.dup2(source, target)
        os.close(source)
    # New stream objects: the helper's own hold its request pipe's buffers.
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = ["fetchdrive", *request["args"]]
    status = 0
    try:
        main(request["args"])
    except SystemExit as exit:
        if isinstance(exit.code, str):
            print(exit.code, file=sys.stderr)
        status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    except BaseException:  # as the interpreter would: the traceback on stderr, status 1
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _serve() -> None:
    # Imported once, before any fork: what the commands and `serve` import, at the top of
    # server/cli.py or when they run, and what some servers load later (psycopg on
    # PostgreSQL, libtorrent for a torrent, apprise to notify).
    import apprise  # noqa: F401
    import cheroot.ssl.builtin  # noqa: F401
    import cheroot.wsgi  # noqa: F401
    import engine.content_store  # noqa: F401
    import libtorrent  # noqa: F401
    import psycopg  # noqa: F401
    import psycopg_pool  # noqa: F401
    import server.app  # noqa: F401
    import server.cli  # noqa: F401
    import server.client  # noqa: F401
    import server.live_sync  # noqa: F401
    import server.serve  # noqa: F401
    import server.user_service  # noqa: F401

    statuses = Path(tempfile.mkdtemp(prefix="forked-"))
    status_files: dict[int, Path] = {}  # pid -> where its exit status goes
    numbers = itertools.count()
    # SIGCHLD only wakes the loop below (a handler of its own could run in the middle of a
    # fork or of itself); the loop reaps.
    woken, wake = os.pipe()
    os.set_blocking(wake, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake)
    pending = b""
    try:
        while True:
            readable, _, _ = select.select([0, woken], [], [])
            if woken in readable:
                os.read(woken, 4096)
                _reap(status_files)
            if 0 not in readable:
                continue
            data = os.read(0, 65536)
            if not data:
                return
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                pid = os.fork()
                if pid == 0:
                    try:
                        signal.set_wakeup_fd(-1)
                        os.close(woken)
                        os.close(wake)
                        _child(json.loads(line))
                    except BaseException:  # before the command ran: a Ctrl-C, a stream it cannot open
                        traceback.print_exc()
                    finally:  # never on into this loop, as a second helper reading the requests
                        os._exit(1)
                status_files[pid] = statuses / f"{next(numbers)}.status"
                os.write(1, json.dumps({"pid": pid, "status_file": str(status_files[pid])}).encode() + b"\n")
    finally:
        shutil.rmtree(statuses, ignore_errors=True)


def _reap(status_files: dict[int, Path]) -> None:
    """Each ended child's exit status into its file (written whole before it is seen), then
    the child reaped: its pid is not given out again while a test could find no status."""
    while status_files and (ended := os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)):
        code = ended.si_status if ended.si_code == os.CLD_EXITED else -ended.si_status
        status_file = status_files.pop(ended.si_pid)
        written = status_file.with_suffix(".part")
        written.write_text(str(code))
        written.rename(status_file)
        os.waitpid(ended.si_pid, 0)


if __name__ == "__main__":
    _serve()
