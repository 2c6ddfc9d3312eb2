"""engine/socket_splice.py on real sockets and files: socket to file inside the kernel."""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import pytest

from engine.socket_splice import splice_supported, splice_to_file


@pytest.fixture
def sockets():
    sender, receiver = socket.socketpair()
    receiver.settimeout(5)  # non-blocking underneath, as urllib3's and cheroot's sockets are
    yield sender, receiver
    sender.close()
    receiver.close()


def send_later(sender: socket.socket, data: bytes, *, close: bool) -> threading.Thread:
    def run() -> None:
        sender.sendall(data)
        if close:
            sender.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_folder_of_the_tests_takes_splice_writes(tmp_path):
    assert splice_supported(tmp_path)


def test_the_check_holds_while_another_node_starting_removes_strays_from_the_folder(tmp_path):
    """Two nodes starting on one storage root: one's clean-up of the temporary folder may
    take the other's check file before that one unlinks it."""
    done = threading.Event()

    def remove_strays() -> None:
        while not done.is_set():
            for entry in os.scandir(tmp_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    remover = threading.Thread(target=remove_strays, daemon=True)
    remover.start()
    try:
        assert all(splice_supported(tmp_path) for _ in range(3000))
    finally:
        done.set()
        remover.join(timeout=10)


def test_bytes_land_at_the_offset_and_nothing_else_changes(tmp_path, sockets):
    sender, receiver = sockets
    path = tmp_path / "file"
    path.write_bytes(b"-" * (6 * 1024 * 1024))
    data = os.urandom(3 * 1024 * 1024 + 17)
    send_later(sender, data, close=False)
    landed: list[int] = []
    fd = os.open(path, os.O_WRONLY)
    try:
        moved = splice_to_file(receiver.fileno(), fd, len(data), timeout=5, offset=1000, after_block=landed.append)
    finally:
        os.close(fd)
    assert moved == len(data) == sum(landed)
    assert path.read_bytes() == b"-" * 1000 + data + b"-" * (6 * 1024 * 1024 - 1000 - len(data))


def test_a_peer_that_hangs_up_early_gives_fewer_bytes(tmp_path, sockets):
    sender, receiver = sockets
    send_later(sender, b"x" * 5000, close=True)
    with open(tmp_path / "file", "wb") as out:
        assert splice_to_file(receiver.fileno(), out.fileno(), 10_000, timeout=5) == 5000
    assert (tmp_path / "file").read_bytes() == b"x" * 5000


def test_a_silent_peer_is_a_timeout(tmp_path, sockets):
    sender, receiver = sockets
    send_later(sender, b"y" * 100, close=False)
    with open(tmp_path / "file", "wb") as out, pytest.raises(TimeoutError, match="nothing arrived for 0.3 s"):
        splice_to_file(receiver.fileno(), out.fileno(), 1000, timeout=0.3)
    assert (tmp_path / "file").read_bytes() == b"y" * 100  # what arrived is kept


def test_after_block_can_stop_the_move_with_what_landed_kept(tmp_path, sockets):
    sender, receiver = sockets
    send_later(sender, b"z" * 4096, close=False)

    def stop(count: int) -> None:
        raise InterruptedError("stop")

    with open(tmp_path / "file", "wb") as out, pytest.raises(InterruptedError):
        splice_to_file(receiver.fileno(), out.fileno(), 10_000, timeout=5, after_block=stop)
    landed = (tmp_path / "file").read_bytes()
    assert landed and landed == b"z" * len(landed)
