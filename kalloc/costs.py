"""The cost model: prices, in CPU cycles, for the events the allocator layers count.

Backends count, the cost model prices.  A backend increments plain integers (locks
taken, critical sections, IPIs sent, pages allocated, bytes zeroed, ...) and never calls
this module, so it runs at full speed outside the harness.  The harness reads the
counters before and after each operation and turns the difference into cycles
(kalloc.pricing); waiting for a lock another CPU holds and IPI delivery latency are
*time*, handled by the harness in virtual time, not here.

Defaults are the 2003 column of docs/research/costs.md (2 CPUs at 2.0 GHz, P4 Xeon class);
``PRESETS["modern"]`` is its modern column.  docs/cost-model.md gives the source of each
figure.  Every field can be overridden from the TOML section ``[costs]`` or with
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
        known = {f.name for f in attrs.fields(cls)}
        for k, v in values.items():
            if k not in known:
                raise ValueError(f"unknown cost {k!r} (known: {', '.join(sorted(known))})")
            lo = 1 if k == "clock_hz" else 0          # time is cycles / clock_hz
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_COST:
                raise ValueError(f"cost {k!r} must be an integer from {lo} to {MAX_COST:,}"
                                 f"{' (cycles per second)' if lo else ' cycles'}, got {v!r}")
        return attrs.evolve(PRESETS[preset], **values)


PRESETS = {
    "2003": CostModel(),
    "modern": CostModel(clock_hz=3_000_000_000, crit_section=4, spl=4, lock_uncontended=32,
                        lock_handoff=100, cas_remote=210, ipi_send=300, ipi_latency=2000,
                        ipi_receive=1000, page_alloc=200, pmap_enter=250, tlb_shootdown=5000,
                        zero_per_kbyte=228, copy_per_kbyte=410, cache_miss=300, coherence_miss=100,
                        tlb_flush=500),
}
