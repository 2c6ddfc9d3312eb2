"""The tests' forked processes (tests/forked_cli.py) when process ids are reused.

The kernel here gives out at most 32,768 pids, and a run's servers, threads and browsers take
some 25,000, so a test's process can get the pid of one that has ended and
whose status nobody has read yet. Each must still get its own exit status, and a signal must
reach the process it was meant for. The pid a fork gets is chosen here by writing the last
one given out to /proc/sys/kernel/ns_last_pid (the tests run as root).
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.downloads_helpers import wait_for
from tests.forked_cli import ForkedProcess, fetchdrive, start
from tests.server_process import ServerProcess

LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


def _ended_unread(folder: Path) -> ForkedProcess:
    """A child that has ended and been reaped (its pid free again), its status not yet read."""
    child = start(["--help"], env=dict(os.environ), stdout=folder / "help.out")
    wait_for(lambda: not Path(f"/proc/{child.pid}").exists(), message="the child ended and reaped")
    return child


def test_a_process_given_the_pid_of_an_ended_one_keeps_its_own_status_and_signals(tmp_path):
    for attempt in range(50):  # other tests' processes may take the pid first
        ended = _ended_unread(tmp_path)
        LAST_PID.write_text(str(ended.pid - 1))
        server = ServerProcess(tmp_path / f"server-{attempt}").start()
        if server.process.pid == ended.pid:
            break
        server.stop()
    else:
        raise AssertionError("no fork got the pid of the ended child in 50 tries")

    assert server.process.poll() is None
    assert ended.poll() == 0
    ended.kill()  # ended: sends nothing, and above all not to the server now holding its pid
    assert server.process.poll() is None
    server.stop()
    assert server.process.returncode == 0
    assert not Path(f"/proc/{ended.pid}").exists()


def test_a_command_reports_its_exit_status_and_output():
    assert fetchdrive("--help").returncode == 0
    failed = fetchdrive("--config", "/nonexistent/config.yaml", "user", "list")
    assert failed.returncode != 0 and failed.stderr.strip()
