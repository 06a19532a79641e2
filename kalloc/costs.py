"""The cost model: prices, in CPU cycles, for the events the allocator layers count.

Backends count, the cost model prices.  A backend increments plain integers (locks
taken, critical sections, IPIs sent, pages allocated, bytes zeroed, ...) and never calls
this module, so it runs at full speed outside the harness.  The harness reads the
counters before and after each operation and turns the difference into cycles
(kalloc.pricing); waiting for a lock another CPU holds and IPI delivery latency are
*time*, handled by the harness in virtual time, not here.

Defaults are the 2003 column of docs/research/costs.md (2 CPUs at 2.0 GHz, P4 Xeon class);
``PRESETS["modern"]`` is its modern column and ``PRESETS["1994"]`` a SPARCstation-2 (40 MHz,
one CPU) for Bonwick 1994's comparisons.  ``RANGES`` is the documented uncertainty of each
2003 price and ``CONFIDENCE`` the digest's confidence in it, for the one-at-a-time sensitivity
sweep.  docs/cost-model.md gives the source of each figure and of each end of each range.  Every field can be overridden from the TOML section ``[costs]`` or with
``--cost name=value``; never tune a cost to get an expected answer.
"""

from __future__ import annotations

import attrs
from attrs import frozen


MAX_COST = 2 ** 63 - 1      # a price (or a clock rate) a 64-bit counter holds


@frozen
class CostModel:
    clock_hz: int = 2_000_000_000     # cycles per second (replay maps trace time with it)
    op_base: int = 40                 # the allocator's own instructions per malloc/free (inf.)
    crit_section: int = 6             # crit_enter + crit_exit (DragonFly thread2.h)
    spl: int = 20                     # splhigh() + splx() (FreeBSD 4 ipl_funcs.c)
    lock_uncontended: int = 110       # spinlock acquire+release, line in own cache
    lock_handoff: int = 250           # lock line fetched from the other CPU's cache
    cas_remote: int = 500             # CAS on a line owned by another CPU
    ipi_send: int = 1500              # sender spins on the APIC ICR delivery status
    ipi_latency: int = 2500           # send to handler start
    ipi_receive: int = 1000           # interrupt entry/exit + dispatch on the target
    page_alloc: int = 300             # vm_page_alloc: a free-queue pop
    pmap_enter: int = 150             # PTE store + local invlpg
    tlb_shootdown: int = 5000         # synchronous shootdown, 2 CPUs
    tlb_shootdown_per_cpu: int = 1000  # each further CPU's receive cost
    zero_per_kbyte: int = 1463        # cold bzero: 0.7 B/cycle -> 1463 cycles per KiB
    copy_per_kbyte: int = 2926        # cold memcpy: 0.35 B/cycle
    cache_miss: int = 250             # first touch of a cold object (miss to DRAM)
    coherence_miss: int = 250         # a shared line fetched from the CPU that wrote it last
    tlb_flush: int = 500              # invltlb (cr3 reload) and the refills after it (inf.)

    @classmethod
    def from_config(cls, values: dict) -> "CostModel":
        """The model named by ``preset`` (default 2003) with fields overridden."""
        values = dict(values)
        preset = values.pop("preset", "2003")
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ValueError(f"unknown cost preset {preset!r} (known: {', '.join(PRESETS)})")
        for k, v in values.items():
            _check_price(k, v)
        return attrs.evolve(PRESETS[preset], **values)


def _check_price(name: str, value) -> None:
    """What from_config requires of every price: a known field, an integer from 0 (the
    clock from 1: time is cycles / clock_hz) that a 64-bit counter holds."""
    known = {f.name for f in attrs.fields(CostModel)}
    if name not in known:
        raise ValueError(f"unknown cost {name!r} (known: {', '.join(sorted(known))})")
    lo = 1 if name == "clock_hz" else 0
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= MAX_COST:
        raise ValueError(f"cost {name!r} must be an integer from {lo} to {MAX_COST:,}"
                         f"{' (cycles per second)' if lo else ' cycles'}, got {value!r}")


PRESETS = {
    "2003": CostModel(),
    "modern": CostModel(clock_hz=3_000_000_000, crit_section=4, spl=4, lock_uncontended=32,
                        lock_handoff=100, cas_remote=210, ipi_send=300, ipi_latency=2000,
                        ipi_receive=1000, page_alloc=200, pmap_enter=250, tlb_shootdown=5000,
                        zero_per_kbyte=228, copy_per_kbyte=410, cache_miss=300, coherence_miss=100,
                        tlb_flush=500),
    # SPARCstation-2: one 40 MHz CY7C601, 64 KiB write-through virtual cache, 32-byte lines.
    # From Bonwick 1994: lock_uncontended (mutex_enter/exit pair 1.0 us) and op_base
    # ((3.8 us kmem_cache_alloc+free - 2 x 1.0 us of mutexes) / 2 ops).  The rest is inferred
    # (docs/cost-model.md).  The SMP-only prices (lock_handoff, coherence_miss, cas_remote,
    # ipi_*, tlb_*) are never charged on one CPU; they are the 2003 column scaled by the
    # memory-miss ratio 20/250, a what-if should anyone run it with ncpus > 1.
    "1994": CostModel(clock_hz=40_000_000, op_base=36, crit_section=6, spl=20, lock_uncontended=40,
                      lock_handoff=20, cas_remote=40, ipi_send=120, ipi_latency=200, ipi_receive=80,
                      page_alloc=100, pmap_enter=100, tlb_shootdown=400, tlb_shootdown_per_cpu=80,
                      zero_per_kbyte=2048, copy_per_kbyte=4096, cache_miss=20, coherence_miss=20,
                      tlb_flush=40),
}

# The documented uncertainty of each 2003 price: {field: (low, high)}, cycles at the 2.0 GHz
# reference clock (clock_hz in Hz).  Each end comes from a figure in docs/research/costs.md
# (another 2003-era machine, or the digest's own bounds); the inferences get wide ranges.
# docs/cost-model.md says where each end comes from.  Never narrow or widen one to make a
# result flip or hold.
RANGES: dict[str, tuple[int, int]] = {
    "clock_hz": (1_200_000_000, 2_800_000_000),  # P3/P4 1.2 GHz (mbwtest, getuid) .. 2.8 GHz SMP Xeon
    "op_base": (20, 120),              # SLUB 42-cycle pair / 2 .. 16 VAX instr. ~ 40 x86 at CPI 3 (inf.)
    "crit_section": (2, 20),           # one add + one sub/test .. the spl default (out-of-line calls)
    "spl": (6, 60),                    # crit_section's inline store+test .. 3x: calls + splz (inf.)
    "lock_uncontended": (50, 140),     # Norvig 2001 25 ns .. P4 Xeon lock-prefixed op 132 + release
    "lock_handoff": (200, 300),        # FSB miss 100 .. 150 ns (Norvig; digest), Opteron 232.5 inside
    "cas_remote": (330, 612),          # 3x local lock (FreeBSD 87c8f0c0f2) .. Opteron 306 ns at 2 GHz
    "ipi_send": (200, 6000),           # modern 100 ns .. Lundell 3 us message+EOI
    "ipi_latency": (2000, 6000),       # DragonFly "1uS or worse" .. Lundell 3 us
    "ipi_receive": (500, 2200),        # 1/2 .. 2 null syscalls (1,100 cycles) (inf.)
    "page_alloc": (100, 1000),         # a hot queue pop .. 4 misses (inf.)
    "pmap_enter": (100, 400),          # PTE store + invlpg .. + a page-table miss (inf.)
    "tlb_shootdown": (2600, 8000),     # DragonFly 24712b9068 ~4 us/page: 2 us at 1.3 GHz .. 4 us at 2 GHz
    "tlb_shootdown_per_cpu": (500, 2200),  # one receiver: the ipi_receive range
    "zero_per_kbyte": (812, 3272),     # mbwtest uncached: Athlon64 2,522 .. 2x P3 1.3 GHz 626 MB/s
    "copy_per_kbyte": (1624, 9816),    # 2x .. 3x the zero range (lmbench bw_mem: bcopy 2-3x traffic)
    "cache_miss": (200, 300),          # 100 ns (Norvig 2001) .. 150 ns (digest, 2003 FSB boxes)
    "coherence_miss": (200, 300),      # the lock_handoff figures
    "tlb_flush": (100, 2000),          # cr3 reload alone .. + 8 page-walk misses at 250 (inf.)
}

# The digest's Conf. column for each 2003 price ("Low-Med" and "Med (path) / Low (cycles)"
# count as "low": the cycles are what is priced; every "Inf." is "low").  clock_hz is the
# reference machine, a choice among the published ones: "med".
CONFIDENCE: dict[str, str] = {
    "clock_hz": "med", "op_base": "low", "crit_section": "med", "spl": "med",
    "lock_uncontended": "high", "lock_handoff": "high", "cas_remote": "high",
    "ipi_send": "low", "ipi_latency": "low", "ipi_receive": "low", "page_alloc": "low",
    "pmap_enter": "low", "tlb_shootdown": "low", "tlb_shootdown_per_cpu": "low",
    "zero_per_kbyte": "med", "copy_per_kbyte": "low", "cache_miss": "med",
    "coherence_miss": "high", "tlb_flush": "low",
}


def _check_ranges() -> None:
    """RANGES and CONFIDENCE cover exactly the CostModel fields; each end passes from_config's
    check and brackets the 2003 default."""
    fields = [f.name for f in attrs.fields(CostModel)]
    if set(RANGES) != set(fields) or set(CONFIDENCE) != set(fields):
        raise ValueError("RANGES and CONFIDENCE must name every CostModel field and no other")
    default = PRESETS["2003"]
    for name, (low, high) in RANGES.items():
        _check_price(name, low)
        _check_price(name, high)
        if not low <= getattr(default, name) <= high:
            raise ValueError(f"RANGES[{name!r}] = {(low, high)} does not contain the 2003 default")
        if CONFIDENCE[name] not in ("high", "med", "low"):
            raise ValueError(f"CONFIDENCE[{name!r}] must be high, med or low")


_check_ranges()
