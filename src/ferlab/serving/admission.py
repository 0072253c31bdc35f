"""Which waiting request is decoded next: a pixel budget for memory, expected work for fair latency.

Decoding costs memory and time in proportion to pixels (16 PNGs of 25 M pixels took
1.35 GB and 4.7 s in issue 20: some 3.4 bytes and 12 ns a pixel), so requests hold
their pixels of a shared budget while they are decoded and classified. Waiting
requests go in the order of ``arrival + pixels / pixels_per_second``: a small photo
does not queue behind a large batch that arrived a moment earlier, and a large batch
is not passed by requests arriving later than its expected decoding time, so none
waits for ever.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from ferlab.errors import FerlabError

__all__ = ["PIXELS_PER_SECOND", "Admission"]

#: Pixels one worker decodes and classifies a second, roughly: only orders waiting requests, bounds nothing.
PIXELS_PER_SECOND = 50_000_000


@dataclass(order=True)
class _Waiter:
    key: float
    seq: int
    pixels: int = field(compare=False)
    admitted: anyio.Event = field(compare=False, default_factory=anyio.Event)


class Admission:
    """At most `slots` requests at once, holding at most `pixels` pixels together; runs on the event loop.

    Args:
        slots: requests in work at once (the worker threads).
        pixels: the pixel budget.
        pixels_per_second: expected work rate, which orders waiting requests.
    """

    def __init__(self, slots: int, pixels: int, pixels_per_second: float = PIXELS_PER_SECOND) -> None:
        self.slots, self.pixels, self.pixels_per_second = slots, pixels, pixels_per_second
        self.running = 0
        self.used = 0
        self._waiting: list[_Waiter] = []  # a heap: the next to admit first
        self._seq = itertools.count()

    @asynccontextmanager
    async def enter(self, pixels: int) -> AsyncIterator[None]:
        """Wait for a slot and `pixels` of the budget, hold them for the block.

        Raises:
            FerlabError: `pixels` above the whole budget (it could never be admitted).
        """
        if pixels > self.pixels:
            raise FerlabError(f"{pixels:,} pixels are above the decode budget of {self.pixels:,}")
        waiter = _Waiter(anyio.current_time() + pixels / self.pixels_per_second, next(self._seq), pixels)
        heapq.heappush(self._waiting, waiter)
        self._admit()
        try:
            await waiter.admitted.wait()
        except BaseException:  # cancelled while waiting: give up the place, or what was just granted
            if waiter.admitted.is_set():
                self._release(pixels)
            else:
                self._waiting.remove(waiter)
                heapq.heapify(self._waiting)
                self._admit()
            raise
        try:
            yield
        finally:
            self._release(pixels)

    def _release(self, pixels: int) -> None:
        self.running -= 1
        self.used -= pixels
        self._admit()

    def _admit(self) -> None:
        """Admit waiters in order while the next one fits; it is never passed, so it is never starved."""
        while self._waiting and self.running < self.slots and self.used + self._waiting[0].pixels <= self.pixels:
            waiter = heapq.heappop(self._waiting)
            self.running += 1
            self.used += waiter.pixels
            waiter.admitted.set()
