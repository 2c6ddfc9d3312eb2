"""Runs `fetchdrive` commands as real processes without paying Python's start-up for each.

A command run as `python -m server.cli` spends most of its time importing the app (1 to 5 s
on a busy CI machine), and the CLI tests run dozens. Here one helper process per test worker
imports `server.cli` once and forks a child for each command: a process of its own, with its
own environment, working folder, standard input, output and error (files, dup'ed onto fds 0,
1 and 2) and exit status, as after `python -m server.cli ARGS`; only the imports are done
before it starts. The helper has no threads when it forks (it only reads requests).
`python -m server.cli` itself still runs for every server the tests start, and as a command in
tests/test_cli_and_config.py's serve tests.

Run as `python -m tests.forked_cli`, the module is that helper: one JSON request a line on
stdin, one JSON answer a line on stdout.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

from tests.server_process import REPO

_helper: subprocess.Popen | None = None


def fetchdrive(*args: str, input: str | None = None, env: dict | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """`fetchdrive ARGS...` in a forked process, with `env` added to this environment and
    `input` on its standard input; its output, as `subprocess.run(..., capture_output=True,
    text=True)` gives it. Raises subprocess.TimeoutExpired (the child killed) after `timeout`."""
    global _helper
    if _helper is None or _helper.poll() is not None:
        _helper = subprocess.Popen([sys.executable, "-m", "tests.forked_cli"], cwd=REPO, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        atexit.register(_helper.kill)
    request = {"args": list(args), "input": input or "", "env": {**os.environ, **(env or {})}, "cwd": str(REPO),
               "timeout": timeout}
    _helper.stdin.write(json.dumps(request) + "\n")
    _helper.stdin.flush()
    answer = json.loads(_helper.stdout.readline())
    if answer["timed_out"]:
        raise subprocess.TimeoutExpired(["fetchdrive", *args], timeout, answer["stdout"], answer["stderr"])
    return subprocess.CompletedProcess(["fetchdrive", *args], answer["returncode"], answer["stdout"], answer["stderr"])


def _child(request: dict, stdin: int, stdout: int, stderr: int) -> None:
    """In the forked child: become `python -m server.cli ARGS` and never return."""
    from server.cli import main

    for source, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(source, target)
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


def _run(request: dict) -> dict:
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        stdin.write(request["input"].encode())
        stdin.seek(0)
        pid = os.fork()
        if pid == 0:
            _child(request, stdin.fileno(), stdout.fileno(), stderr.fileno())
        deadline = time.monotonic() + request["timeout"]
        timed_out = False
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                timed_out = True
                break
            time.sleep(0.005)
        outputs = []
        for stream in (stdout, stderr):
            stream.seek(0)
            outputs.append(stream.read().decode(errors="replace"))
    return {"returncode": os.waitstatus_to_exitcode(status), "stdout": outputs[0], "stderr": outputs[1],
            "timed_out": timed_out}


def _serve() -> None:
    # Imported once, before any fork: what the commands import, at the top of server/cli.py
    # or when they run.
    import engine.content_store  # noqa: F401
    import server.app  # noqa: F401
    import server.cli  # noqa: F401
    import server.user_service  # noqa: F401

    sys.stdout.flush()
    for line in sys.stdin:
        print(json.dumps(_run(json.loads(line))), flush=True)


if __name__ == "__main__":
    _serve()
