"""Metrics of a run: the warm-up and the measured phase, latency, per-CPU time, memory.

The harness (kalloc.harness) drives virtual time and kalloc.pricing turns counters into
cycles; this module only *records* what they report, and builds the record's sections.

Phases
------
A run is a warm-up followed by a measured phase.  The warm-up is the first ``warmup``
allocator operations (malloc, free, realloc, counted in the order the harness executes
them, on all CPUs); the phase switches when the last of them has been priced.  Every
figure of the record's ``ops``, ``sim``, ``latency``, ``cpus``, ``memory``, ``zeroing`` and
``counters`` covers the measured phase only: at the switch the running totals are
snapshotted and the measured phase reports the differences, its histograms start empty,
its footprint peak starts from the footprint then.  The warm-up keeps four figures of its
own (``warmup``: ops, cycles, peak footprint, bytes zeroed), so the same stream run with
``warmup = 0`` has ``ops`` equal to the warm-up's plus the measured phase's.  The
simulation itself does not change with ``warmup``: only what is counted does.

Latency
-------
Each malloc, free and IPI handler has a latency: cycles from its start on its CPU (the
CPU free and the thread ready) to its end, lock waiting included.  They are integers, and a
run has few distinct values (a few thousand at most), so a histogram (value -> count) keeps
them *exactly* in little memory: the percentiles are exact order statistics (the nearest
rank: the smallest value with at least q of the operations at or below it).

Per-CPU time
------------
Each CPU's measured makespan splits into busy cycles and idle cycles.  Busy cycles are
work (what the workload yields with ``work``), allocator operations (malloc, free,
realloc, their lock waiting included: a spinning CPU is busy), IPI and TLB-invalidation
handlers, and ``call``s (DMA and other kernel services).  ``sim.allocator_share`` is
(allocator + handler cycles) / busy cycles over all CPUs.

Memory (Johnstone & Wilson, ISMM 1998, "The memory fragmentation problem: solved?")
----------------------------------------------------------------------------------
J&W define fragmentation as memory used by the allocator relative to memory requested, and
measure it at chosen instants: #1 averaged over all points in time, #2 at the instant of
maximum live (requested) memory, #3 maximum memory used against requested memory at the
point of maximum live memory, #4 maximum used against maximum live, wherever each is.
kalloc takes its instant at the measured phase's **footprint peak** (the allocator's
memory at its highest): ``overhead_ratio`` = memory grown above boot / requested bytes at
that instant, and ``internal_fragmentation_bytes`` = usable - requested bytes of the live
allocations at the same instant; ``mean_overhead_ratio`` is J&W's #1 as a ratio of time
averages: (time-integral of grown bytes) / (time-integral of requested bytes) over the
measured phase.
"""

from __future__ import annotations

from collections import defaultdict

LATENCY_KINDS = ("malloc", "free", "ipi_handler")
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))


def summary(hist: dict) -> dict:
    """count, mean, p50, p90, p99, p999 and max of a histogram value -> count (exact:
    nearest-rank percentiles); all 0 for an empty one."""
    n = sum(hist.values())
    out = {"count": n, "mean": 0.0}
    if not n:
        out.update({name: 0 for name, _ in QUANTILES})
        out["max"] = 0
        return out
    values = sorted(hist)
    out["mean"] = round(sum(v * c for v, c in hist.items()) / n, 3)
    it = iter(values)
    seen, v = 0, None
    for name, q in QUANTILES:
        rank = max(1, -(-n * q // 1))            # ceil(n q), at least 1
        while seen < rank:
            v = next(it)
            seen += hist[v]
        out[name] = v
    out["max"] = values[-1]
    return out


class Metrics:
    """What a run records.  Plain attributes updated by the harness's hot path:

    ``lat[kind]`` a histogram per LATENCY_KINDS; ``alloc``, ``wait``, ``handler``, ``work``
    and ``calls`` per-CPU cycle sums; ``live_req``/``live_usable`` the live allocations'
    requested and usable bytes; ``fp`` the footprint; the time integrals for the mean overhead."""

    __slots__ = ("ncpus", "lat", "alloc", "wait", "handler", "work", "calls", "warmup", "measuring",
                 "t0", "snap", "warm", "live_req", "live_usable", "fp", "boot_fp", "peak_fp", "peak_req",
                 "peak_usable", "peak_fp_req", "frag_at_peak", "zero_req", "t_last", "area_grown",
                 "area_req", "series", "nops")

    def __init__(self, ncpus: int, warmup: int, boot_fp: int):
        self.ncpus = ncpus
        self.warmup = warmup
        self.boot_fp = self.fp = boot_fp
        self.live_req = self.live_usable = 0
        self.zero_req = 0
        self.series: list = []
        self.nops = 0
        self.warm = None
        self._start_phase(0, None)
        self.measuring = warmup == 0

    def _start_phase(self, now: int, snap) -> None:
        n = self.ncpus
        self.lat = {k: defaultdict(int) for k in LATENCY_KINDS}
        self.alloc, self.wait, self.handler, self.work, self.calls = ([0] * n for _ in range(5))
        self.t0, self.snap = now, snap
        self.peak_fp = self.fp
        self.peak_req = self.peak_fp_req = self.live_req
        self.peak_usable = self.live_usable
        self.frag_at_peak = self.live_usable - self.live_req
        self.zero_req = 0
        self.t_last = now
        self.area_grown = self.area_req = 0

    def end_warmup(self, now: int, snap: dict, warm: dict) -> None:
        """The warm-up's last operation has been priced at ``now``: ``snap`` holds the
        running totals to subtract, ``warm`` the warm-up's own figures."""
        self.warm = warm
        self._start_phase(now, snap)
        self.measuring = True

    # --- memory, called by each allocator operation and at the end ---------------------------
    def live_changed(self, now: int, req_delta: int = 0, usable_delta: int = 0) -> None:
        """The state the last operation left (live bytes, and the footprint its pricing
        found) held until ``now``: account that interval at those values, see whether that
        state is a new footprint peak (the instant of overhead_ratio and internal
        fragmentation); then the operation at ``now`` changes the live bytes by the deltas
        (requested and usable bytes of a block that became live, or minus those of one that
        was freed)."""
        fp, req = self.fp, self.live_req
        dt = now - self.t_last
        if dt > 0:
            self.area_grown += dt * (fp - self.boot_fp)
            self.area_req += dt * req
            self.t_last = now
        if fp >= self.peak_fp and (fp > self.peak_fp or req > self.peak_fp_req):
            self.peak_fp = fp
            self.peak_fp_req = req
            self.frag_at_peak = self.live_usable - req
        if req > self.peak_req:
            self.peak_req = req
        if req_delta or usable_delta:         # (a malloc of 0 bytes holds usable bytes too)
            self.live_req = req + req_delta
            self.live_usable += usable_delta

    # --- the record's sections -----------------------------------------------------------------
    def latency_record(self) -> dict:
        return {k: summary(h) for k, h in self.lat.items()}

    def memory_record(self, end_fp: int, end_now: int) -> dict:
        self.live_changed(end_now)
        grown = self.peak_fp - self.boot_fp
        req = self.peak_fp_req
        return {
            "peak_requested_bytes": self.peak_req,
            "peak_footprint_bytes": self.peak_fp,
            "end_footprint_bytes": end_fp,
            "boot_footprint_bytes": self.boot_fp,
            "peak_growth_bytes": grown,
            "requested_at_peak_bytes": req,
            "overhead_ratio": round(grown / req, 4) if req else None,
            "mean_overhead_ratio": round(self.area_grown / self.area_req, 4) if self.area_req else None,
            "internal_fragmentation_bytes": self.frag_at_peak,
        }
