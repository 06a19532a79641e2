"""The replay rules: a trace's events -> the malloc/free operations a simulator replays.

A trace is a window on a running kernel, not a closed program: it starts with objects
already allocated, loses events when a ring buffer overflows, and records allocations that
failed.  These rules turn the parsed event stream (``kalloc.replay.parse``) into a stream of
operations any backend can replay, and count every case where the trace and a clean
malloc/free history disagree.  They know nothing of the simulator.

The rules
---------
* Each event runs on the CPU the trace recorded.
* An allocation that returned NULL failed in the traced kernel: counted in
  ``failed_allocs``, not replayed.
* A free of NULL is a no-op, as in the kernel: counted in ``null_frees``.
* Every other event first ends the life of whatever allocation is live at its address:

  - a free of a live pointer is replayed as a free of that allocation;
  - a free of a pointer that is not live (allocated before the trace began, or its
    allocation was lost or made by a path without a tracepoint) is counted in
    ``unknown_frees`` and skipped;
  - an allocation at a pointer that is still live means the free in between was not
    recorded (lost, or made by a path without a tracepoint, such as a bulk free): a free of
    the earlier allocation is replayed first, on the CPU of the new allocation, and counted
    in ``implicit_frees``.

  then an allocation becomes live at its address and is replayed.

Operations are tuples::

    (cpu, MALLOC, key, size, flags, tname, ts)     size = bytes_req, flags = malloc(9) flags
    (cpu, CACHE_ALLOC, key, size, flags, tname, bytes_alloc, ts)
                                                   a kmem_cache_alloc* event: an object of the
                                                   cache ``tname`` (its name=), whose object
                                                   size is bytes_req and whose slot the kernel
                                                   made bytes_alloc bytes
    (cpu, FREE, key, ts)                           a free of either (the allocation decides:
                                                   Linux's kfree takes cache objects too)

``ts`` is the event's timestamp in seconds (an implicit free takes the timestamp of the
allocation that revealed it); it comes last so a driver that ignores time can slice it off.
``key`` numbers the replayed allocations 0, 1, 2, ...; the simulator maps each key to the
address its own backend returned, because trace addresses mean nothing to another
allocator.  ``tname`` is the malloc type to charge (``parse`` explains the name).

Memory grows with the live allocations only: one dict entry ``ptr -> (key, cpu, size)`` for
each, whatever the length of the trace.

The statistics
--------------
``TraceStats`` holds these counters (``as_dict`` keys, a public contract):

``events`` kmem events parsed (always ``allocs + frees``, so derived rather than stored);
``allocs`` and ``frees`` every allocation and free event, failed allocations, NULL and
unknown frees included; ``null_frees``, ``unknown_frees``, ``implicit_frees``,
``failed_allocs`` as above; ``unparsed`` kmem lines the parser could not read; ``live_end`` allocations still live at the end of the trace;
``peak_live_requested_bytes`` the peak of the summed ``bytes_req`` of live allocations;
``cross_cpu_frees`` free events of a live pointer on a CPU other than the allocating one.
Implicit frees do not count: they are no free event, and the trace does not say on which CPU
the unrecorded free ran (replay puts it on the new allocation's CPU, and the backend's own
counters, remote frees and IPIs, see it there).  Besides these,
``skipped`` counts the lines that were no kmem event, and ``unparsed_samples`` keeps the
parser's first few unreadable lines as ``(line_number, text)``.
"""

from __future__ import annotations

from collections import deque

from kalloc.replay.parse import ALLOC, WINDOW, TraceParser, open_trace

MALLOC = 0
FREE = 1
CACHE_ALLOC = 2

COUNTERS = ("events", "allocs", "frees", "null_frees", "unknown_frees", "implicit_frees",
            "failed_allocs", "unparsed", "live_end", "peak_live_requested_bytes",
            "cross_cpu_frees")
_STORED = tuple(name for name in COUNTERS if name != "events")   # events = allocs + frees


class TraceStats:
    """What a trace contained and how the replay rules treated it (see the module docstring)."""

    __slots__ = _STORED + ("skipped", "unparsed_samples")

    def __init__(self):
        for name in _STORED:
            setattr(self, name, 0)
        self.skipped = 0
        self.unparsed_samples: list[tuple[int, str]] = []

    @property
    def events(self) -> int:
        """Every event is an allocation or a free."""
        return self.allocs + self.frees

    def take_parser_counts(self, parser: TraceParser) -> None:
        """Copy the parser's ``unparsed``, ``skipped`` and ``unparsed_samples``."""
        self.unparsed = parser.unparsed
        self.skipped = parser.skipped
        self.unparsed_samples = list(parser.unparsed_samples)

    def as_dict(self) -> dict:
        """The counters, ``skipped`` and ``unparsed_samples``, ready for ``json.dumps``."""
        counts = {name: getattr(self, name) for name in COUNTERS}
        counts["skipped"] = self.skipped
        counts["unparsed_samples"] = [[lineno, text] for lineno, text in self.unparsed_samples]
        return counts

    def __repr__(self) -> str:
        return "TraceStats(%s)" % ", ".join(f"{name}={getattr(self, name)}" for name in COUNTERS)


def replay_ops(parser_events, stats: TraceStats):
    """Yield the operations that replay ``parser_events`` (event tuples in time order).

    ``stats`` is updated as the events go by, except ``allocs``, ``frees``,
    ``peak_live_requested_bytes`` and ``live_end``, which are brought up to date when the
    events run out or the generator is closed.
    """
    live = {}               # ptr -> (key, cpu, bytes_req) of each live allocation
    pop = live.pop
    live_bytes = 0
    peak = stats.peak_live_requested_bytes
    allocs = frees = key = 0
    try:
        for ts, cpu, kind, ptr, size, alloc, flags, tname, _site, cache in parser_events:
            if kind == ALLOC:
                allocs += 1
                if not ptr:
                    stats.failed_allocs += 1
                    continue
                old = pop(ptr, None)
                if old is not None:         # its free was not recorded: free it now
                    stats.implicit_frees += 1
                    live_bytes -= old[2]
                    yield (cpu, FREE, old[0], ts)
                live[ptr] = (key, cpu, size)
                live_bytes += size
                if live_bytes > peak:
                    peak = live_bytes
                yield ((cpu, CACHE_ALLOC, key, size, flags, tname, alloc, ts) if cache else
                       (cpu, MALLOC, key, size, flags, tname, ts))
                key += 1
            else:
                frees += 1
                if not ptr:
                    stats.null_frees += 1
                    continue
                old = pop(ptr, None)
                if old is None:
                    stats.unknown_frees += 1
                    continue
                if old[1] != cpu:
                    stats.cross_cpu_frees += 1
                live_bytes -= old[2]
                yield (cpu, FREE, old[0], ts)
    finally:
        stats.allocs += allocs
        stats.frees += frees
        stats.peak_live_requested_bytes = peak
        stats.live_end = len(live)


def count_trace(path, window: int = WINDOW) -> TraceStats:
    """Parse the trace at ``path`` (``open_trace`` rules) and apply the replay rules without a
    simulator: the statistics only."""
    parser = TraceParser(window)
    stats = TraceStats()
    lines = open_trace(path)
    try:
        deque(replay_ops(parser.events(lines), stats), maxlen=0)
    finally:
        lines.close()
    stats.take_parser_counts(parser)
    return stats
