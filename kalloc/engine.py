"""The event core: a heap of (time, priority, seq, callback, arg).  Nothing else.

Deterministic: ties in time are broken by priority, then by ``seq``, a counter that
grows with every schedule call, so two runs with the same inputs pop events in exactly
the same order (the SimPy scheme: simpy/core.py keeps ``(time, priority, eid, event)``).
There is no wall clock and no randomness here; CPUs, threads, locks and IPIs live in
kalloc.harness and only *schedule* callbacks.  A callback takes one argument (a thread, a
CPU, a message): a call with one argument is the interpreter's fast call, ``f(*args)`` is not,
and the harness runs one event or more per allocator operation.

    URGENT (0)  interrupts: an IPI handler arriving at t runs before a thread step at t
    NORMAL (1)  thread steps
"""

from __future__ import annotations

from heapq import heappop, heappush
from itertools import count

URGENT = 0
NORMAL = 1


class Engine:
    __slots__ = ("now", "queue", "_seq")

    def __init__(self) -> None:
        self.now = 0
        self.queue: list = []
        self._seq = count()

    def schedule(self, time: int, callback, arg, priority: int = NORMAL) -> None:
        """``callback(arg)`` at ``time``."""
        if time < self.now:
            raise ValueError(f"cannot schedule in the past ({time} < {self.now})")
        heappush(self.queue, (time, priority, next(self._seq), callback, arg))

    def step(self) -> None:
        time, _, _, callback, arg = heappop(self.queue)
        self.now = time
        callback(arg)

    def run(self, until: int | None = None) -> None:
        """Run events until none is left (or the next one is later than ``until``); the
        loop is step() written out, since it runs once per event."""
        q = self.queue
        if until is None:
            while q:
                time, _, _, callback, arg = heappop(q)
                self.now = time
                callback(arg)
            return
        while q and q[0][0] <= until:
            time, _, _, callback, arg = heappop(q)
            self.now = time
            callback(arg)
