"""What a transfer reports to and asks of the task it runs for: progress, cancel, room in
the user's quota and the bandwidth throttle, in one object shared by its stream or segments."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable

from engine.download import Download
from engine.errors import Cancelled, failure
from engine.outcomes import Outcome

CHUNK = 1024 * 1024
ROOM_STEP = 16 * CHUNK


@dataclass
class TransferContext:
    """`room(total, whole=False)` holds room in the quota for a file of `total` bytes (with
    `whole`, all of it or nothing more) and says how much it got (a claim never gives room
    back); `throttle(n)` waits as long as n bytes may take."""

    on_progress: Callable[[Download], None]
    is_cancelled: Callable[[], bool]
    room: Callable[..., int]
    throttle: Callable[[int], None] = lambda count: None
    # `interrupting(cut)`: while inside, a cancel calls `cut` (engine/cancel_signal.py)
    interrupting: Callable[[Callable[[], None]], AbstractContextManager[None]] = lambda cut: nullcontext()

    def landed(self, count: int) -> None:
        """`count` more bytes are in the file: pace the transfer, and stop it if it was cancelled."""
        self.throttle(count)
        self.stop_if_cancelled()

    def stop_if_cancelled(self) -> None:
        if self.is_cancelled():
            raise Cancelled()

    def require_room(self, total: int) -> None:
        """Claim room for all of a file of `total` bytes, or fail for good holding nothing more:
        it cannot fit."""
        held = self.room(total, whole=True)
        if held < total:
            raise failure(Outcome.QUOTA, detail=f"the file is {total} bytes and the quota leaves room for {held}")

    def room_for_next_read(self, done: int) -> int:
        """How many bytes the next read after `done` may take: up to CHUNK, within the room held
        (claimed a step ahead when the length is unknown); 0 once the quota is reached."""
        held = self.room(done)  # what is held already
        if done + CHUNK > held:
            held = self.room(done + ROOM_STEP)
        return max(0, min(CHUNK, held - done))
