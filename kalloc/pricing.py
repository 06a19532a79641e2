"""Pricing: the counters an operation moved, turned into cycles.

Backends count, the cost model prices (kalloc.costs).  A backend, the VM and the machine
only increment plain integers; the harness calls ``Pricing.take`` at the end of each priced
section (an allocator operation, an IPI handler, a ``call``) and gets the cycles of what
moved since the previous call.  The counters read at the end of one section are those at
the start of the next, so each section costs one read of every counter::

    counter                       price of one                    where it is counted
    lock_acquires                 lock (+ spl), see below          backend (kmem_map splhigh, kernel_map)
    crit_sections                 crit_section                    backend (slab)
    cold_allocs                   cache_miss                      backend: memory never touched since mapped
    remote_cas                    cas_remote                      backend (passive remote free)
    lines.misses                  coherence_miss                  machine (kalloc.coherence): backends and harness touch
    ipis                          ipi_send                        machine: hardware IPIs sent
    pages_mapped                  page_alloc + pmap_enter         VM
    tlb_shootdowns                tlb_shootdown (sync model)      VM: one per unmapping on SMP
    pages_mapped + pages_unmapped ipi_send (2003 model, SMP)      VM: smp_invltlb per page entered/removed
    bytes_zeroed, bytes_copied    zero_per_kbyte, copy_per_kbyte  VM (per KiB, rounded down)

The counters that move on the fast paths and on cross-CPU frees (locks, critical sections,
cold allocations, coherence misses, remote compare-and-swaps, IPIs) are priced as one running
total of their cycles (constant prices: the cycles of what moved are the difference of two
totals); the VM's and the page counters, which need more than a price (TLB invalidations,
bytes rounded to KiB, the footprint), are compared as one tuple and priced only when
something moved.  Which part of an operation's cycles holds the global lock is the
harness's business (kalloc.harness); ``take`` reports the cycles of bzero apart, since a
backend may zero outside its lock (``ZERO_UNDER_LOCK``).

A 1-CPU kernel is a UP build (``kernel_build = "auto"``): no lock prefix, no MP lock, so
a lock costs ``spl`` alone; ``kernel_build = "smp"`` prices SMP locks on one CPU too.
"""

from __future__ import annotations


def lock_price(costs, ncpus: int, kernel_build: str) -> int:
    """A lock acquisition and release: spl alone on a UP kernel, plus the locked
    instruction (lock_uncontended) on an SMP one."""
    smp = ncpus > 1 or kernel_build == "smp"
    return costs.spl + (costs.lock_uncontended if smp else 0)


class Pricing:
    """One kernel's counters and the prices of a cost model."""

    __slots__ = ("be", "vm", "m", "lines", "fast", "lock", "rare", "p_lock", "p_crit", "p_cold", "p_cas", "p_coh",
                 "p_ipi", "p_page", "p_shoot", "p_zero", "p_copy", "metrics", "page_size", "shootdowns", "zero_cycles",
                 "per_page")

    def __init__(self, kernel, costs, metrics, kernel_build: str = "auto", tlb_model: str = "2003"):
        self.be, self.vm, self.m = kernel.backend, kernel.vm, kernel.machine
        self.lines = self.m.lines
        n = self.m.ncpus
        self.p_lock = lock_price(costs, n, kernel_build)
        self.p_crit, self.p_cold = costs.crit_section, costs.cache_miss
        self.p_cas, self.p_coh, self.p_ipi = costs.cas_remote, costs.coherence_miss, costs.ipi_send
        self.p_page = costs.page_alloc + costs.pmap_enter
        self.per_page = tlb_model == "2003" and n > 1
        if self.per_page:             # 2003: an all-but-self IPI per page, not waited for
            self.p_shoot = costs.ipi_send
        else:                         # sync: the initiator waits for every CPU's flush
            self.p_shoot = costs.tlb_shootdown + max(0, n - 2) * costs.tlb_shootdown_per_cpu
        self.p_zero, self.p_copy = costs.zero_per_kbyte, costs.copy_per_kbyte
        self.metrics = metrics
        self.page_size = self.m.arch.page_size
        self.fast = self.lock = self.shootdowns = self.zero_cycles = 0
        self.rare = None
        self.take()                   # the counters at boot: from here on, what moves is priced

    def drop(self) -> None:
        """Forget what moved since the last take: an attempt that sleeps (Deadlock) undoes
        itself and is not priced; its retry is."""
        self.take()

    def take(self) -> tuple[int, bool]:
        """(cycles of what the counters moved since the last take, whether a lock was
        taken).  When something rare moved, ``shootdowns`` and ``zero_cycles`` hold that
        part (else 0), and a changed footprint is passed to the metrics."""
        be, vm, m = self.be, self.vm, self.m
        lock = be.lock_acquires
        fast = (lock * self.p_lock + be.crit_sections * self.p_crit + be.cold_allocs * self.p_cold
                + self.lines.misses * self.p_coh + be.remote_cas * self.p_cas + m.ipis * self.p_ipi)
        cost = fast - self.fast
        self.fast = fast
        locked = lock != self.lock
        self.lock = lock
        rare = (vm.pages_mapped, vm.tlb_shootdowns, vm.bytes_zeroed, vm.bytes_copied, m.free_count,
                vm.pages_unmapped)
        r0 = self.rare
        if rare == r0:
            self.shootdowns = self.zero_cycles = 0
            return cost, locked
        self.rare = rare
        if r0 is None:                # the first take, at boot
            return cost, locked
        pages, shoot, zeroed, copied, free_count, unmapped = rare
        if self.per_page:             # 2003: one invalidation IPI per page entered or removed
            shoot = (pages - r0[0]) + (unmapped - r0[5])
        else:                         # sync: one shootdown per unmapping
            shoot -= r0[1]
        self.shootdowns = shoot
        self.zero_cycles = zero = (zeroed - r0[2]) * self.p_zero // 1024
        cost += ((pages - r0[0]) * self.p_page + shoot * self.p_shoot + zero
                 + (copied - r0[3]) * self.p_copy // 1024)
        if free_count != r0[4]:                  # pages changed hands: a new footprint
            self.metrics.fp = (m.npages - free_count) * self.page_size
        return cost, locked
