"""The 2003 machine mechanisms (docs/research/mechanisms.md section 9), each with its switch.

For each mechanism: its counter moves and its price is applied, checked in exact cycles
against the CostModel on a tiny 1- to 3-CPU Simulator; and its option turned off gives the
simpler pricing kalloc had before.  Small machines (16M) and a few operations: fast.
"""

import pytest

from kalloc.costs import CostModel
from kalloc.flags import M_ZERO
from kalloc.harness import RunSpec, Simulator, run_one, summarize
from kalloc.machine import ARCHES, VM_ALLOC_ZERO, Machine, zidle_hi, zidle_lo
from kalloc.malloc import boot
from kalloc.pricing import lock_price
from kalloc.vm_zone import kmem_alloc
from kalloc.workload import Context, free, get, idle, malloc, put, realloc, work

C = CostModel()
PAGE = 4096
PAGE_CYCLES = 4 * C.zero_per_kbyte          # what the idle loop needs to zero one page
ZONE = 32768                                # slab ZoneSize at 16M
ZONE_PAGES = ZONE // PAGE


def make(backend, ncpus=2, physmem="16M", costs=None, **options):
    return Simulator(boot(backend, ncpus=ncpus, physmem=physmem, **options), CostModel.from_config(costs or {}))


def run(s, *threads):
    """threads: (cpu, generator) pairs, added in order (the first wins a tie at t=0)."""
    for i, (cpu, gen) in enumerate(threads):
        s.add_thread(cpu, f"t{i}", gen)
    s.run()
    return s


def hist(s, kind):
    return dict(s.metrics.lat[kind])


def zero_cycles(nbytes):
    return nbytes * C.zero_per_kbyte // 1024


# --- 1. idle zeroing ---------------------------------------------------------------------------

@pytest.mark.parametrize("backend,default", [("slab", False), ("kmem_map", True), ("bump", True)])
def test_idle_zero_defaults_per_backend(backend, default):
    s = make(backend, 1)
    assert s.mech["idle_zero"] is default
    assert (s.zero_idle is not None) is default
    assert make(backend, 1, idle_zero=not default).mech["idle_zero"] is (not default)


def test_zero_idle_stops_at_four_fifths_and_resumes_below_two_thirds():
    m = Machine(1, 1 << 20, ARCHES["i386"], "4.8")          # 256 pages
    m.zero_idle(10_000)
    assert m.zero_count == zidle_hi(m.free_count) == m.pages_prezeroed == 204
    assert m.zero_state == 1
    assert sum(len(q.zeroed) for q in m.queues) == 204 and sum(m.pg_zero) == 204
    # take PG_ZERO pages with zero-preferring requests: between ZIDLE_HI and ZIDLE_LO the
    # idle loop does nothing (hysteresis), below ZIDLE_LO it zeroes again
    stalled = 0
    while m.zero_count >= zidle_lo(m.free_count):
        colour = next(c for c, q in enumerate(m.queues) if q.zeroed)
        pfn = m.page_alloc(VM_ALLOC_ZERO, colour)
        assert m.pg_zero[pfn]                                 # it took a PG_ZERO page, from the tail
        before = m.pages_prezeroed
        if m.zero_count >= zidle_lo(m.free_count):
            m.zero_idle(5)
            assert m.pages_prezeroed == before
            if m.zero_count < zidle_hi(m.free_count):
                stalled += 1
    assert stalled > 0                                        # the hysteresis band was crossed
    before = m.pages_prezeroed
    m.zero_idle(1)
    assert m.pages_prezeroed == before + 1
    m.zero_idle(10_000)
    assert m.zero_count == zidle_hi(m.free_count)


@pytest.mark.parametrize("prezero", [True, False])
def test_kmem_alloc_takes_pg_zero_pages_without_bzero(prezero):
    k = boot("slab", ncpus=1, physmem="16M")
    vm = k.vm
    if prezero:
        k.machine.zero_idle(64)                               # two pages of every colour
    zeroed, used = vm.bytes_zeroed, vm.prezeroed_used
    va = kmem_alloc(vm, 4 * PAGE, "test")
    assert va is not None
    if prezero:
        assert vm.bytes_zeroed == zeroed and vm.prezeroed_used == used + 4
    else:
        assert vm.bytes_zeroed == zeroed + 4 * PAGE and vm.prezeroed_used == used
    assert not any(k.machine.pg_zero[vm.pmap[(va >> 12) + i]] for i in range(4))   # PG_ZERO cleared


def _idle_then_new_zone(idle_zero, gap=64 * PAGE_CYCLES):
    s = make("slab", 1, idle_zero=idle_zero)
    cold = []

    def t():
        yield idle(gap)
        yield malloc(64, "t")                                 # a new zone: VM_ALLOC_ZERO pages
        cold.append(s.be.cold_allocs)
        yield malloc(64, "t")                                 # a never-used chunk of it
        cold.append(s.be.cold_allocs)
    run(s, (0, t()))
    return s, cold


def test_idle_zeroing_spares_a_new_slab_zone_its_bzero():
    on, cold_on = _idle_then_new_zone(True)
    off, cold_off = _idle_then_new_zone(False)
    z_on, z_off = on.zeroing_record(), off.zeroing_record()
    assert z_on["pages_prezeroed"] == on.counters_record()["pages_prezeroed"] == 64   # idle // page cycles
    assert z_off["pages_prezeroed"] == 0
    assert z_on["bytes_zeroed"] == 0 and z_off["bytes_zeroed"] == ZONE
    assert on.vm.prezeroed_used == ZONE_PAGES and off.vm.prezeroed_used == 0
    # the new zone's malloc: no bzero, but its first chunk is cold (no bzero wrote its line)
    first_on = max(hist(on, "malloc"))
    first_off = max(hist(off, "malloc"))
    assert first_off - first_on == zero_cycles(ZONE) - C.cache_miss
    assert cold_on == [1, 2] and cold_off == [0, 1]


def test_a_new_zones_first_chunk_is_not_cold_after_its_bzero():
    s, cold = _idle_then_new_zone(False)
    assert cold == [0, 1]
    lat = sorted(hist(s, "malloc"))
    # the second malloc: op_base + crit_section + one cache miss (never-used chunk), nothing else
    assert lat[0] == C.op_base + C.crit_section + C.cache_miss


def test_busy_cpu_does_not_zero_only_an_idle_one_does():
    s = make("kmem_map", 1)
    assert s.mech["idle_zero"]

    def t(kind):
        yield kind(64 * PAGE_CYCLES)
        yield malloc(64, "t")
    run(s, (0, t(work)))
    assert s.counters_record()["pages_prezeroed"] == 0
    s = run(make("kmem_map", 1), (0, t(idle)))
    assert s.counters_record()["pages_prezeroed"] == 64


# --- 2. IPI draining -----------------------------------------------------------------------------

def _remote_burst(ipi_drain, n=4):
    """cpu0 allocates n chunks and hands them to cpu1, then makes a new zone (a long
    uninterruptible malloc); cpu1 frees them all: n remote frees arriving during it."""
    s = make("slab", 2, ipi_drain=ipi_drain)
    q = Context("x", {}, 2, 0).queue("q")

    def owner():
        hs = []
        for _ in range(n):
            hs.append((yield malloc(64, "t")))
        yield put(q, hs)
        yield malloc(200, "t")

    def freer():
        for h in (yield get(q)):
            yield free(h)
    return run(s, (0, owner()), (1, freer()))


def test_ipi_drain_takes_a_burst_in_fewer_interrupts():
    on, off = _remote_burst(True), _remote_burst(False)
    c_on, c_off = on.counters_record(), off.counters_record()
    assert c_on["ipis"] == c_off["ipis"] == c_on["remote_frees"] == 4
    assert c_on["ipi_interrupts"] == 2 < c_on["ipis"]        # one drain + its latched interrupt
    assert c_off["ipi_interrupts"] == c_off["ipis"] == 4
    h_on, h_off = on.cpus_record()[0]["ipi_handler_cycles"], off.cpus_record()[0]["ipi_handler_cycles"]
    handler_work = C.op_base + C.crit_section                 # free_remote: a local free
    assert h_on == 4 * handler_work + 2 * C.ipi_receive
    assert h_off == 4 * handler_work + 4 * C.ipi_receive
    assert h_off - h_on == (c_on["ipis"] - c_on["ipi_interrupts"]) * C.ipi_receive
    # every message is a handler run of its own (the TLB interrupts of cpu0's zones besides)
    assert on.metrics.latency_record()["ipi_handler"]["count"] == 4 + c_on["tlb_interrupts"]
    assert hist(on, "ipi_handler")[handler_work] == 2 and hist(off, "ipi_handler")[handler_work + C.ipi_receive] == 4
    # the sender pays ipi_send for every message either way
    assert hist(on, "free") == hist(off, "free") == {C.op_base + C.ipi_send: 4}


def _late_message_in_tlb_drain(two_early):
    """Early: one or two remote frees reach cpu0 during a long malloc (two: one drain and
    its latched interrupt).  A million cycles later cpu1 makes a zone (8 TLB interrupts on
    cpu0) and frees a chunk of cpu0's: its IPI reaches cpu0 while they run."""
    s = make("slab", 2)
    q = Context("x", {}, 2, 0).queue("q")

    def owner():
        hs = []
        for _ in range(3):
            hs.append((yield malloc(64, "t")))
        yield put(q, hs)
        yield malloc(200, "t")

    def other():
        hs = yield get(q)
        yield free(hs[0])
        if two_early:
            yield free(hs[1])
        yield idle(1_000_000)
        yield malloc(300, "u")
        yield free(hs[2])
    return run(s, (0, owner()), (1, other()))


def test_each_drain_latches_one_interrupt_even_after_an_earlier_drain():
    one, two = _late_message_in_tlb_drain(False), _late_message_in_tlb_drain(True)
    # with one early free the late message costs its latched interrupt (control: passes)
    assert one.counters_record()["ipi_interrupts"] == 2
    # with two early frees (one drain, latched) the late message must cost the same
    assert two.counters_record()["ipi_interrupts"] == 3
    # two early frees against one: one more message and its latched interrupt, nothing less
    assert (two.cpus_record()[0]["ipi_handler_cycles"] - one.cpus_record()[0]["ipi_handler_cycles"]
            == C.op_base + C.crit_section + C.ipi_receive)


# --- 3. coherence --------------------------------------------------------------------------------

def _kmem_map_two_users(coherence, cpu_b):
    s = make("kmem_map", 2, coherence=coherence)

    def t(delay):
        yield idle(delay)
        h = yield malloc(64, "t")
        yield free(h)
    return run(s, (0, t(0)), (cpu_b, t(100_000)))


def test_coherence_kmem_map_lines_move_between_cpus():
    alt = _kmem_map_two_users(True, 1)
    same = _kmem_map_two_users(True, 0)
    # cpu1's malloc: cpl, the type, the bucket, the kmemusage line and the chunk (freed on cpu0)
    assert alt.counters_record()["coherence_misses"] == 5
    assert same.counters_record()["coherence_misses"] == 0
    lock = C.spl + C.lock_uncontended
    assert hist(alt, "free") == hist(same, "free") == {C.op_base + lock: 2}
    assert min(hist(same, "malloc")) == C.op_base + lock                  # LIFO reuse, same CPU
    assert min(hist(alt, "malloc")) == C.op_base + lock + C.lock_handoff + 5 * C.coherence_miss


def test_coherence_off_drops_the_misses_and_their_cycles():
    on, off = _kmem_map_two_users(True, 1), _kmem_map_two_users(False, 1)
    misses = on.counters_record()["coherence_misses"]
    assert misses > 0 and off.counters_record()["coherence_misses"] == 0
    assert not off.coherent and off.mech["coherence"] is False
    alloc = lambda s: sum(c["allocator_cycles"] for c in s.cpus_record())      # noqa: E731
    assert alloc(on) - alloc(off) == misses * C.coherence_miss
    assert min(hist(on, "malloc")) - min(hist(off, "malloc")) == misses * C.coherence_miss


@pytest.mark.parametrize("percpu,lines", [(False, 1), (True, 3)])
def test_coherence_slab_malloc_type_lines(percpu, lines):
    def go(**o):
        s = make("slab", 2, **o)

        def t(delay):
            yield idle(delay)
            yield malloc(64, "t")
        return run(s, (0, t(0)), (1, t(100_000)))
    on, off = go(percpu_type_stats=percpu), go(percpu_type_stats=percpu, coherence=False)
    assert on.counters_record()["coherence_misses"] == lines
    assert off.counters_record()["coherence_misses"] == 0
    assert max(hist(on, "malloc")) - max(hist(off, "malloc")) == lines * C.coherence_miss


def test_coherence_nothing_misses_on_one_cpu():
    s = make("kmem_map", 1)

    def t():
        for _ in range(3):
            h = yield malloc(64, "t")
            yield free(h)
    run(s, (0, t()))
    assert s.counters_record()["coherence_misses"] == 0 and not s.coherent


def _misses_taking_a_chunk_freed_on_cpu1(use_realloc):
    """cpu1 frees a 64-byte chunk; cpu0 then gets that chunk (kmem_map's LIFO bucket) by a
    malloc(64) or by realloc of a 32-byte block to 64: the coherence misses of that one op."""
    s = make("kmem_map", 2)
    got = []

    def a():
        h = yield malloc(64, "t")
        yield free(h)

    def b():
        yield idle(100_000)
        g = yield malloc(32, "t")
        before = s.counters_record()["coherence_misses"]
        yield realloc(g, 64) if use_realloc else malloc(64, "t")
        got.append(s.counters_record()["coherence_misses"] - before)
    run(s, (1, a()), (0, b()))
    return got[0]


def test_coherence_realloc_counts_the_chunk_freed_on_another_cpu():
    assert _misses_taking_a_chunk_freed_on_cpu1(False) == 2     # the bucket head and the chunk (control)
    assert _misses_taking_a_chunk_freed_on_cpu1(True) == 2


# --- 4. TLB invalidation -------------------------------------------------------------------------

def _large_block(ncpus, tlb_model, npages=3):
    s = make("kmem_map", ncpus, tlb_model=tlb_model)

    def t():
        h = yield malloc(npages * PAGE, "t")                  # > 8192: its own pages
        yield free(h)                                         # kmem_free: unmapped
    return run(s, (0, t()))


def test_tlb_2003_one_all_but_self_ipi_per_page_mapped_or_unmapped():
    s = _large_block(2, "2003")
    c = s.counters_record()
    assert c["tlb_ipis"] == 6 and c["tlb_interrupts"] == 6 and c["tlb_shootdowns"] == 1
    lock = C.spl + C.lock_uncontended
    assert hist(s, "malloc") == {C.op_base + lock + C.cache_miss + 3 * (C.page_alloc + C.pmap_enter)
                                 + 3 * C.ipi_send: 1}
    assert hist(s, "free") == {C.op_base + lock + 3 * C.ipi_send: 1}
    receiver = s.cpus_record()[1]
    assert receiver["ipi_handler_cycles"] == 6 * (C.op_base + C.ipi_receive + C.tlb_flush)
    assert hist(s, "ipi_handler") == {C.op_base + C.ipi_receive + C.tlb_flush: 6}


def test_tlb_2003_every_other_cpu_is_interrupted():
    s = _large_block(3, "2003")
    c = s.counters_record()
    assert c["tlb_ipis"] == 6 and c["tlb_interrupts"] == 12
    cpus = s.cpus_record()
    assert cpus[0]["ipi_handler_cycles"] == 0
    assert cpus[1]["ipi_handler_cycles"] == cpus[2]["ipi_handler_cycles"] == 6 * (
        C.op_base + C.ipi_receive + C.tlb_flush)


@pytest.mark.parametrize("ncpus", [2, 3])
def test_tlb_sync_the_initiator_pays_one_shootdown_per_unmapping(ncpus):
    s = _large_block(ncpus, "sync")
    c = s.counters_record()
    assert c["tlb_shootdowns"] == 1 and c["tlb_ipis"] == 0 and c["tlb_interrupts"] == 0
    lock = C.spl + C.lock_uncontended
    assert hist(s, "malloc") == {C.op_base + lock + C.cache_miss + 3 * (C.page_alloc + C.pmap_enter): 1}
    assert hist(s, "free") == {C.op_base + lock + C.tlb_shootdown + (ncpus - 2) * C.tlb_shootdown_per_cpu: 1}
    assert all(cpu["ipi_handler_cycles"] == 0 for cpu in s.cpus_record())


@pytest.mark.parametrize("model", ["2003", "sync"])
def test_tlb_nothing_at_one_cpu(model):
    s = _large_block(1, model)
    c = s.counters_record()
    assert c["tlb_shootdowns"] == c["tlb_ipis"] == c["tlb_interrupts"] == 0
    assert hist(s, "malloc") == {C.op_base + C.spl + C.cache_miss + 3 * (C.page_alloc + C.pmap_enter): 1}
    assert hist(s, "free") == {C.op_base + C.spl: 1}


# --- 5. lock hold --------------------------------------------------------------------------------

def _contend(backend, lock_hold, size, flags, size_b=64):
    s = make(backend, 2, lock_hold=lock_hold)

    def a():
        yield malloc(size, "t", flags)

    def b():
        yield malloc(size_b, "u")
    return run(s, (0, a()), (1, b()))


def test_lock_hold_serialised_kmem_map_zeroes_after_unlocking():
    ser, whole = _contend("kmem_map", "serialised", 2048, M_ZERO), _contend("kmem_map", "whole", 2048, M_ZERO)
    assert ser.zeroing_record()["bytes_zeroed"] == whole.zeroing_record()["bytes_zeroed"] == 2048
    w_ser, w_whole = ser.cpus_record()[1]["lock_wait_cycles"], whole.cpus_record()[1]["lock_wait_cycles"]
    assert 0 < w_ser < w_whole
    assert w_whole - w_ser == zero_cycles(2048)
    # cpu0's own malloc costs the same; it waits for nobody
    assert ser.cpus_record()[0]["allocator_cycles"] == whole.cpus_record()[0]["allocator_cycles"]
    assert ser.cpus_record()[0]["lock_wait_cycles"] == 0
    assert w_whole == whole.cpus_record()[0]["allocator_cycles"]


def test_lock_hold_without_m_zero_changes_nothing():
    ser, whole = _contend("kmem_map", "serialised", 2048, 0), _contend("kmem_map", "whole", 2048, 0)
    assert ser.cpus_record() == whole.cpus_record()
    assert ser.cpus_record()[1]["lock_wait_cycles"] > 0


def test_lock_hold_slab_zeroes_its_new_zone_under_the_lock():
    # kmem_slab_alloc bzeroes the zone before vm_map_unlock (ZERO_UNDER_LOCK): both modes alike
    ser, whole = _contend("slab", "serialised", 64, 0, 200), _contend("slab", "whole", 64, 0, 200)
    assert ser.cpus_record() == whole.cpus_record()
    assert ser.cpus_record()[1]["lock_wait_cycles"] >= zero_cycles(ZONE)


# --- 6. UP kernel ----------------------------------------------------------------------------------

def test_lock_price_up_and_smp():
    assert lock_price(C, 1, "auto") == C.spl
    assert lock_price(C, 1, "smp") == C.spl + C.lock_uncontended
    assert lock_price(C, 2, "auto") == lock_price(C, 2, "smp") == C.spl + C.lock_uncontended


def _kmem_map_ops(ncpus, kernel_build):
    s = make("kmem_map", ncpus, kernel_build=kernel_build)

    def t():
        h = yield malloc(64, "t")
        h2 = yield malloc(64, "t")
        yield free(h)
        yield free(h2)
    return run(s, (0, t()))


def test_up_kernel_lock_costs_spl_only():
    up, smp = _kmem_map_ops(1, "auto"), _kmem_map_ops(1, "smp")
    for kind in ("malloc", "free"):
        assert hist(smp, kind) == {v + C.lock_uncontended: n for v, n in hist(up, kind).items()}
    assert hist(up, "free") == {C.op_base + C.spl: 2}
    # at 2 CPUs the kernel is SMP either way
    assert _kmem_map_ops(2, "auto").cpus_record() == _kmem_map_ops(2, "smp").cpus_record()


# --- 7. giant --------------------------------------------------------------------------------------

def _two_workers(giant, cycles=10_000):
    s = make("bump", 2, giant=giant)

    def t():
        yield work(cycles)
    return run(s, (0, t()), (1, t()))


def test_giant_serialises_work_on_two_cpus():
    g, free_ = _two_workers(True), _two_workers(False)
    assert free_.sim_record()["makespan_cycles"] == 10_000
    assert g.sim_record()["makespan_cycles"] == 2 * 10_000 + C.lock_handoff
    assert g.cpus_record()[1]["lock_wait_cycles"] == 10_000
    assert free_.sim_record()["lock_wait_cycles"] == 0


def test_giant_is_labelled_in_the_record_and_the_summary():
    params = {"reserve": 4, "bursts": 3, "max_cblocks": 2, "think_cycles": 1000}
    g = run_one(RunSpec("bump", "tty", ncpus=2, params=params, options={"giant": True}, warmup=0))
    n = run_one(RunSpec("bump", "tty", ncpus=2, params=params, warmup=0))
    assert g["machine"]["giant"] is True and n["machine"]["giant"] is False
    assert summarize([g])[0]["giant"] is True and summarize([n])[0]["giant"] is False
    assert g["sim"]["makespan_cycles"] > n["sim"]["makespan_cycles"]


# --- passive remote free ---------------------------------------------------------------------------

def _fill_zone_then_free_remotely(remote_free):
    """cpu0 fills a zone of 8192-byte chunks (NMax 3 at 32K), cpu1 frees all three."""
    s = make("slab", 2, remote_free=remote_free)
    q = Context("x", {}, 2, 0).queue("q")

    def owner():
        hs = []
        for _ in range(3):
            hs.append((yield malloc(8000, "t")))
        yield put(q, hs)

    def freer():
        for h in (yield get(q)):
            yield free(h)
    return run(s, (0, owner()), (1, freer()))


def test_passive_remote_free_sends_no_hardware_ipi():
    p, i = _fill_zone_then_free_remotely("passive"), _fill_zone_then_free_remotely("ipi")
    cp, ci = p.counters_record(), i.counters_record()
    assert cp["ipis"] == 0 and cp["ipi_interrupts"] == 0
    assert cp["passive_ipis"] == 1                            # only on RSignal and RChunks empty
    assert cp["remote_cas"] == 3 and cp["remote_frees"] == 3
    assert p.passive_runs == 1
    # the owner's handler: kfree_remote's critical section, no interrupt entry
    assert p.cpus_record()[0]["ipi_handler_cycles"] == C.op_base + C.crit_section
    base = C.op_base + C.crit_section + C.cas_remote
    assert hist(p, "free") == {base + C.coherence_miss: 1, base: 2}   # the type line moves once
    # ipi mode: one hardware IPI and interrupt per free
    assert ci["ipis"] == ci["ipi_interrupts"] == 3 and ci["passive_ipis"] == 0 and ci["remote_cas"] == 0
    assert hist(i, "free") == {C.op_base + C.ipi_send: 3}
    assert i.cpus_record()[0]["ipi_handler_cycles"] == 3 * (C.op_base + C.crit_section + C.ipi_receive)
