"""The slab backend (kern_slaballoc.c 1.1/1.2) against docs/research/slab.md: the rules as pure
functions at every boundary, the zone machinery (ZoneAry, z_PageAry/z_FirstFreePg, FreeZones),
kmem_slab_alloc's classes and failures, cross-CPU and passive frees, M_ZERO, realloc, the
dated knobs, the reports, and the lead's conformance machine under each knob.
(tests/test_slab_rules.py holds the digest's hand-checked rows.)"""

import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

import kalloc
from kalloc import M_NOWAIT, M_NULLOK, M_USE_RESERVE, M_WAITOK, M_ZERO, MallocType
from kalloc.backends.slab import (CHUNK_SIZES, KMEMUSAGE_SIZE, NZONES, SLZF_UNOTZEROD, ZALLOC_SLAB_MAGIC,
                                  first_offset, slab_page_class, type_limit, zone_header_size, zone_limit,
                                  zone_nmax, zone_size, zoneindex)
from kalloc.cli import main as cli_main
from kalloc.conformance import machine_for
from kalloc.machine import ARCHES, VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM, VM_ALLOC_ZERO, Machine

KIB, MIB = 1 << 10, 1 << 20
I386 = ARCHES["i386"]


def boot(**kw):
    kw.setdefault("physmem", "64M")
    return kalloc.boot("slab", **kw)


def zone_of(k, addr):
    be = k.backend
    return be.zones[addr & ~be.zone_mask]


def deferred_ipis(k) -> list:
    """Hold IPIs the way the harness does (delivered later), for the test to run."""
    queue = []
    k.machine.ipi_handler = lambda src, dst, func, args: queue.append((dst, func, args))
    return queue


# --- zoneindex (section 1.2) ------------------------------------------------------------------
def zoneindex_by_chunk_list(n):
    """Independent formulation: the smallest of the 72 chunk sizes (8..128 by 8, then eight
    per power-of-two band) that holds n; its position is the zone index."""
    chunks = list(range(8, 129, 8))
    for lo in (128, 256, 512, 1024, 2048, 4096, 8192):
        chunks += list(range(lo + lo // 8, 2 * lo + 1, lo // 8))
    zi = bisect.bisect_left(chunks, n)
    return zi, chunks[zi]


def test_zoneindex_exhaustive_against_the_chunk_list():
    assert [zoneindex_by_chunk_list(c)[1] for c in CHUNK_SIZES] == CHUNK_SIZES
    assert all(zoneindex(n) == zoneindex_by_chunk_list(n) for n in range(1, 16384))


@given(st.integers(1, 16383))
def test_zoneindex_rounds_up_to_the_band_granularity(n):
    zi, chunk = zoneindex(n)
    gran = max(8, 1 << max(0, n.bit_length() - 4))      # 1/8 of the band's power of two
    assert chunk >= n and chunk - n < gran and chunk % gran == 0 and CHUNK_SIZES[zi] == chunk


@pytest.mark.parametrize("n,want", [(0, (-1, 0)), (255, (23, 256)), (256, (23, 256)), (511, (31, 512)),
                                    (4095, (55, 4096)), (4096, (55, 4096)), (8191, (63, 8192)),
                                    (12287, (67, 12288)), (16384 - 1024, (70, 15360))])
def test_zoneindex_band_edges(n, want):
    assert zoneindex(n) == want


@pytest.mark.parametrize("n", [16384, 20000, 1 << 31])
def test_zoneindex_panics_past_the_limit(n):
    with pytest.raises(kalloc.KernelPanic, match=f"^Unexpected byte count {n}$"):
        zoneindex(n)


# --- ZoneSize, header, geometry (sections 2.1-2.4) --------------------------------------------
@pytest.mark.parametrize("kb,zs", [(65536, 32), (65537, 64), (131072, 64), (131073, 128)])
def test_zone_size_thresholds_are_strict_in_kb(kb, zs):
    assert zone_size(kb * KIB) == zs * KIB


def test_zone_size_table_and_kva_cap():
    table = {16: 32, 32: 32, 64: 32, 96: 64, 128: 64, 192: 128, 512: 128, 1024: 128, 4096: 128}
    assert {m: zone_size(m * MIB, I386.kva_size) // KIB for m in table} == table
    assert zone_size(4096 * MIB, I386.kva_size) == zone_size(I386.kva_size)
    for mib, zs in ((64, 32), (128, 64), (256, 128)):
        be = boot(physmem=f"{mib}M").backend
        assert (be.zone_size, be.zone_page_count, be.zone_mask) == (zs * KIB, zs // 4, zs * KIB - 1)


def test_zone_limit_rule():
    assert [zone_limit(zs) for zs in (32768, 65536, 131072)] == [16384] * 3
    assert [zone_limit(zs, "runtime") for zs in (32768, 65536, 131072)] == [8192, 16384, 16384]


def test_header_sizes_by_arch_and_version():
    assert (zone_header_size("i386", "1.1"), zone_header_size("i386", "1.2")) == (164, 168)
    assert (zone_header_size("amd64", "1.1"), zone_header_size("amd64", "1.2")) == (304, 304)
    assert [first_offset(c, 304) for c in (8, 24, 32, 64, 128, 256, 512)] == [304, 304, 320, 320, 384, 512, 512]
    assert boot(arch="amd64").backend.header_size == 304
    assert boot(mzero_bug=True).backend.header_size == 164


# NMax and first offset of a few zones at each ZoneSize (i386, header 168).
GEOMETRY = [  # zone, chunk, first offset, NMax at 32K, 64K, 128K
    (0, 8, 168, 4075, 8171, 16363), (1, 16, 176, 2037, 4085, 8181), (5, 48, 168, 679, 1361, 2727),
    (15, 128, 256, 254, 510, 1022), (23, 256, 256, 127, 255, 511), (31, 512, 512, 63, 127, 255),
    (47, 2048, 2048, 15, 31, 63), (55, 4096, 4096, 7, 15, 31), (56, 4608, 168, 7, 14, 28),
    (63, 8192, 8192, 3, 7, 15), (64, 9216, 168, 3, 7, 14), (70, 15360, 168, 2, 4, 8),
    (71, 16384, 16384, 1, 3, 7)]


@pytest.mark.parametrize("zi,chunk,off,n32,n64,n128", GEOMETRY)
def test_geometry_at_each_zone_size(zi, chunk, off, n32, n64, n128):
    assert CHUNK_SIZES[zi] == chunk and first_offset(chunk, 168) == off
    for zs, nmax in ((32768, n32), (65536, n64), (131072, n128)):
        assert zone_nmax(zs, chunk, 168) == nmax
    row = boot(physmem="256M").stats()["classes"][zi]
    assert (row["zone"], row["size"], row["first_offset"], row["objs_per_slab"], row["slab_bytes"]) == \
        (zi, chunk, off, n128, 131072)


def test_a_new_zone_is_laid_out_as_the_header_says():
    k, t = boot(physmem="128M"), MallocType("x")
    a = k.malloc(200, t)                                  # zone 20, 208-byte chunks
    z = zone_of(k, a)
    assert z.base % 65536 == 0 and a == z.base + 168
    assert (z.magic, z.zi, z.chunk, z.nmax, z.nfree) == (ZALLOC_SLAB_MAGIC, 20, 208, 314, 313)
    assert (z.ualloc, z.first_free_pg, z.cpu) == (168 + 208, 16, 0)
    assert k.vm.kernel_map.is_allocated(z.base, 65536) and k.vm.is_mapped(z.base + 65535)


# --- boot: kmemusage (section 2.1) --------------------------------------------------------------
def test_kmemusage_array_is_allocated_at_boot_on_i386_only():
    k = boot()
    be, m = k.backend, k.machine
    assert be.kmemusage_bytes == I386.kva_size // 4096 * KMEMUSAGE_SIZE == 1041412
    assert be.kmemusage_va == I386.kva_min and m.npages - m.free_count == 255
    assert k.vm.bytes_zeroed == 255 * 4096                # kmem_slab_alloc(M_ZERO)
    amd = boot(arch="amd64")
    assert amd.backend.kmemusage_va is None and amd.machine.free_count == amd.machine.npages


# --- malloc: zones, page lists, ZoneAry (section 3) ---------------------------------------------
def test_lower_pages_are_reused_first_and_lifo_within_a_page():
    k, t = boot(physmem="256M"), MallocType("x")
    ptrs = [k.malloc(1000, t) for _ in range(40)]        # 1024-byte chunks from offset 1024
    z = zone_of(k, ptrs[0])
    page = lambda a: (a - z.base) >> 12                   # noqa: E731
    p1, p3a, p3b = ptrs[2], ptrs[12], ptrs[13]
    assert (page(p1), page(p3a), page(p3b)) == (0, 3, 3)
    for p in (p3a, p3b, p1):
        k.free(p, t)
    assert z.first_free_pg == 0
    assert [k.malloc(1000, t) for _ in range(3)] == [p1, p3b, p3a]
    assert z.first_free_pg == 3                           # a lazy lower bound: advanced for good
    assert k.malloc(1000, t) == ptrs[-1] + 1024           # then never-used memory again
    # all but the 3 from the free lists and the zone's first chunk, whose lines the zone's
    # bzero has just written
    assert k.stats()["counters"]["cold_allocs"] == 40


def test_zone_list_head_full_zones_and_first_free():
    k, t = boot(), MallocType("x")
    n = zone_nmax(32768, 512, 168)
    ptrs = [k.malloc(500, t) for _ in range(2 * n + 1)]
    zones = list(dict.fromkeys(zone_of(k, p) for p in ptrs))
    zl = k.backend.slgd[0].zone_ary[31]
    assert len(zones) == 3 and zl == [zones[2]]           # full zones left ZoneAry
    k.free(ptrs[0], t)                                    # first free of a full zone: at the head
    assert zl == [zones[2], zones[0]] and k.malloc(500, t) == ptrs[0]
    assert zl == [zones[2]]                               # full again: unlinked from the head


def test_the_last_zone_of_a_size_stays_even_when_empty():
    k, t = boot(), MallocType("x")
    a = k.malloc(64, t)
    k.free(a, t)
    z = zone_of(k, a)
    assert z.magic == ZALLOC_SLAB_MAGIC and k.backend.slgd[0].zone_ary[7] == [z]
    assert k.stats()["classes"][7]["slabs"] == 1 and k.stats()["slab"]["free_zones_per_cpu"] == [0]


def test_page_multiples_and_large_requests_go_to_kmem():
    k, t = boot(physmem="256M"), MallocType("x")
    be = k.backend
    for size, pages in ((4096, 1), (8192, 2), (12288, 3), (16384, 4), (20000, 5)):
        a = k.malloc(size, t)
        assert a % 4096 == 0 and k.usable_size(a) == pages * 4096
        assert be.kmemusage[(a - I386.kva_min) >> 12] == pages and a & ~be.zone_mask not in be.zones
    assert k.usable_size(k.malloc(4095, t)) == 4096 and k.stats()["classes"][55]["inuse"] == 1
    assert k.usable_size(k.malloc(12287, t)) == 12288
    assert k.stats()["slab"]["large_live"] == 5 and k.stats()["slab"]["large_pages"] == 15


@pytest.mark.parametrize("physmem", ["64M", "128M", "256M"])
def test_power_of_two_chunks_are_naturally_aligned_in_every_zone(physmem):
    k, t = boot(physmem=physmem), MallocType("tty")
    nmax = k.backend.nmaxes
    for zi, chunk in enumerate(CHUNK_SIZES):
        if chunk & (chunk - 1) == 0 and chunk < 16384:
            for _ in range(nmax[zi] + 2):                 # into a second zone
                assert k.malloc(chunk - 1, t) % chunk == 0
    assert k.malloc(1025, t) % 8 == 0 and k.usable_size(k.malloc(1025, t)) == 1152


def test_large_blocks_are_freed_from_any_cpu_without_an_ipi():
    k, t = boot(ncpus=2), MallocType("x")
    a = k.malloc(40000, t, cpu=0)
    wired = k.machine.free_count
    k.free(a, t, cpu=1)
    st = k.stats()
    assert st["vm"]["ipis"] == 0 and st["vm"]["tlb_shootdowns"] == 1 and k.machine.free_count == wired + 10
    assert (t.inuse, t.memuse) == (0, 0) and st["slab"]["kmem_slab_frees"] == 1
    with pytest.raises(kalloc.DoubleFree):
        k.free(a, t)


# --- kmem_slab_alloc (sections 5.1, 6.2) ----------------------------------------------------
def test_page_class_quirk():
    assert slab_page_class(M_ZERO) == slab_page_class(M_NOWAIT | M_ZERO) == VM_ALLOC_ZERO
    assert slab_page_class(M_ZERO | M_USE_RESERVE) == VM_ALLOC_ZERO
    assert slab_page_class(M_NOWAIT) == VM_ALLOC_INTERRUPT
    assert slab_page_class(M_NOWAIT | M_USE_RESERVE) == slab_page_class(M_WAITOK) == VM_ALLOC_SYSTEM
    assert slab_page_class(0) == slab_page_class(M_NULLOK) == VM_ALLOC_SYSTEM


def test_every_new_zone_asks_for_zeroed_pages(monkeypatch):
    k, t = boot(), MallocType("x")
    seen = []
    real = Machine.page_alloc
    monkeypatch.setattr(Machine, "page_alloc", lambda m, c, col=0: seen.append(c) or real(m, c, col))
    k.malloc(100, t, M_NOWAIT)                            # a new zone: flags | M_ZERO
    k.malloc(8192, t, M_NOWAIT)                           # large, no M_ZERO: the interrupt reserve
    k.malloc(8192, t, M_NOWAIT | M_USE_RESERVE)
    assert seen == [VM_ALLOC_ZERO] * 8 + [VM_ALLOC_INTERRUPT] * 2 + [VM_ALLOC_SYSTEM] * 2


def test_kernel_map_exhaustion_panics_unless_the_caller_takes_null():
    k, t = boot(), MallocType("x")
    assert k.malloc(2 << 30, t, M_NOWAIT) is None and k.malloc(2 << 30, t, M_NULLOK) is None
    with pytest.raises(kalloc.KernelPanic, match=r"^kmem_slab_alloc\(\): kernel_map ran out of space!$"):
        k.malloc(2 << 30, t)


def test_page_shortage_undoes_then_null_or_vm_wait():
    k, t = boot(), MallocType("x", limit=1 << 40)
    before = (k.machine.free_count, k.vm.kernel_map.size)
    assert k.malloc(64 * MIB, t, M_NOWAIT) is None
    assert (k.machine.free_count, k.vm.kernel_map.size) == before and t.calls == 1
    for flags in (M_WAITOK, M_NULLOK):                    # M_NULLOK does not stop vm_wait
        with pytest.raises(kalloc.Deadlock, match="sleeps on \"vmwait\"") as e:
            k.malloc(64 * MIB, t, flags)
        assert e.value.channel == "vmwait"
    assert (k.machine.free_count, k.vm.kernel_map.size) == before and (t.calls, t.inuse) == (1, 0)


# --- limits and accounting (sections 4.2, 4.3) --------------------------------------------------
def test_limit_is_tested_before_adding_and_never_sleeps():
    k, t = boot(), MallocType("devbuf", limit=1000)
    a = k.malloc(1000, t)                                 # 1024 >= 1000 afterwards: overshoot
    assert t.memuse == 1024
    with pytest.raises(kalloc.KernelPanic, match="^devbuf: malloc limit exceeded$"):
        k.malloc(0, t)                                    # the limit comes before size 0
    k.free(a, t)
    assert k.malloc(0, t) == 0xFFFFFFF8 and (t.calls, t.inuse, t.memuse, t.maxused) == (3, 0, 0, 1024)
    assert type_limit(64 * MIB, I386.kva_size) == 6710886


def test_counters_for_the_cost_model():
    k, t = boot(), MallocType("x")
    a = k.malloc(100, t)                                  # new zone: one kernel_map lock
    k.free(a, t)
    k.free(k.malloc(100, t), t)
    c = k.stats()["counters"]
    # no cold miss: the chunk of the new zone is in the lines its bzero has just written
    assert (c["crit_sections"], c["lock_acquires"], c["cold_allocs"], c["remote_frees"]) == (4, 1 + 1, 0, 0)


def test_first_chunk_of_a_zone_is_cold_only_when_no_bzero_wrote_it():
    k, t = boot(idle_zero=True), MallocType("x")
    k.machine.zero_idle(10_000)                           # the idle loop: PG_ZERO pages at the tails
    assert k.machine.pages_prezeroed == 10_000
    zeroed = k.vm.bytes_zeroed
    k.malloc(100, t)                                      # a new zone of PG_ZERO pages: no bzero
    assert k.vm.bytes_zeroed == zeroed and k.vm.prezeroed_used == 8
    assert k.stats()["counters"]["cold_allocs"] == 1      # nothing has touched its lines


# --- cross-CPU free (section 4.1, 8) -------------------------------------------------------------
def test_a_delayed_ipi_frees_and_accounts_on_the_owner():
    k, t = boot(ncpus=2), MallocType("x")
    q = deferred_ipis(k)
    a = k.malloc(100, t, cpu=0)
    k.free(a, t, cpu=1)
    assert len(q) == 1 and q[0][0] == 0 and (t.inuse, t.memuse) == (1, 104)
    assert k.malloc(100, t, cpu=0) != a                    # not on a free list yet
    with pytest.raises(kalloc.DoubleFree):
        k.free(a, t, cpu=1)                               # in flight: already freed
    _, func, args = q.pop()
    func(*args)
    assert (t.inuse, t.memuse) == (1, 104) and k.malloc(100, t, cpu=0) == a
    assert k.stats()["counters"]["remote_frees"] == 1 and k.machine.ipis == 1


def test_passive_remote_free_signals_only_a_zone_that_left_zoneary():
    k, t = boot(ncpus=2, remote_free="passive"), MallocType("x")
    q = deferred_ipis(k)
    ptrs = [k.malloc(100, t, cpu=0) for _ in range(k.backend.nmaxes[12])]
    z = zone_of(k, ptrs[0])
    zl = k.backend.slgd[0].zone_ary[12]
    assert (z.nfree, z.rsignal, zl) == (0, 1, [])          # the last chunk set RSignal
    for p in ptrs[:5]:
        k.free(p, t, cpu=1)                               # one IPI: RChunks empty -> non-empty
    assert (len(q), z.rcount, len(z.rchunks), t.inuse) == (1, 1, 5, len(ptrs) - 5)
    _, func, args = q.pop()
    func(*args)                                           # kfree_remote on cpu 0
    assert (z.nfree, z.rsignal, z.rcount, z.rchunks, zl) == (5, 0, 0, [], [z])
    c = k.stats()["counters"]
    # the message is passive: queued without a hardware IPI
    assert (c["remote_frees"], c["remote_cas"], k.machine.ipis, k.machine.passive_ipis) == (5, 5, 0, 1)


def test_passive_chunks_wait_until_the_owner_runs_out():
    k, t = boot(ncpus=2, remote_free="passive"), MallocType("x")
    n = k.backend.nmaxes[12]
    ptrs = [k.malloc(100, t, cpu=0) for _ in range(n - 1)]
    z = zone_of(k, ptrs[0])
    for p in ptrs[:10]:
        k.free(p, t, cpu=1)                               # RSignal clear: no IPI at all
    assert (k.machine.ipis, len(z.rchunks), z.nfree) == (0, 10, 1)
    last = k.malloc(100, t, cpu=0)                        # NFree hits 0: RChunks drained first
    assert (z.nfree, z.rsignal, len(z.rchunks)) == (10, 0, 0) and last in ptrs[:10]
    assert k.malloc(100, t, cpu=0) in ptrs[:10]


def test_rcount_keeps_a_zone_from_being_retired_under_an_ipi():
    k, t = boot(ncpus=2, remote_free="passive"), MallocType("x")
    q = deferred_ipis(k)
    ptrs = [k.malloc(100, t, cpu=0) for _ in range(k.backend.nmaxes[12])]   # full: RSignal set
    k.malloc(100, t, cpu=0)                               # a second zone: the first may retire
    z = zone_of(k, ptrs[0])
    k.free(ptrs[0], t, cpu=1)                             # signalled: RCount 1, the IPI held
    k.free(ptrs[1], t, cpu=0)                             # back on ZoneAry
    assert k.malloc(100, t, cpu=0) == ptrs[0]             # NFree 1 -> 0 drains RChunks first
    assert (z.rsignal, z.rcount, len(q)) == (0, 1, 1)
    for p in ptrs[:1] + ptrs[2:]:
        k.free(p, t, cpu=0)
    assert z.nfree == z.nmax and z.magic == ZALLOC_SLAB_MAGIC    # wholly free, but an IPI is due
    _, func, args = q.pop()
    func(*args)
    assert z.magic == -1 and z.rcount == 0 and k.stats()["slab"]["free_zones_per_cpu"] == [1, 0]


# --- FreeZones (section 3.5) -----------------------------------------------------------------------
def _empty_zones(k, t, nzones, size=1000):
    ptrs = [k.malloc(size, t) for _ in range(k.backend.nmaxes[zoneindex(size)[0]] * nzones)]
    zones = list(dict.fromkeys(zone_of(k, p) for p in ptrs))
    for p in ptrs:
        k.free(p, t)
    return zones


def test_1_1_trimming_replaces_the_head_and_releases_it():
    k, t = boot(), MallocType("x")
    z1, z2, z3, z4 = _empty_zones(k, t, 4)
    fz = k.backend.slgd[0].free_zones
    assert fz == [z2, z4] and z3.base not in k.backend.zones     # z4 replaced z3, the head
    assert z2.magic == z4.magic == -1 and k.backend.slgd[0].zone_ary[39] == [z1]
    assert k.malloc(100, t) == z4.base + 168                       # reuse takes the head
    assert k.vm.kernel_map.is_allocated(z4.base, 32768)


def test_zone_trim_malloc_defers_the_release_to_a_blocking_malloc():
    k, t = boot(zone_trim="malloc"), MallocType("x")
    _empty_zones(k, t, 5)
    be = k.backend
    assert len(be.slgd[0].free_zones) == 4 and be.zones_released == 0
    k.malloc(100, t, M_NOWAIT)                            # M_NOWAIT never trims
    assert len(be.slgd[0].free_zones) == 3 and be.zones_released == 0
    k.malloc(100, t)
    assert len(be.slgd[0].free_zones) == 2 and be.zones_released == 1


def test_zone_cache_zero():
    k, t = boot(zone_trim="malloc", zone_cache=0), MallocType("x")
    _empty_zones(k, t, 3)
    k.malloc(8, t)
    assert k.stats()["slab"]["free_zones_per_cpu"] == [0]
    with pytest.raises(ValueError, match="zone_cache=0 needs zone_trim=malloc"):
        boot(zone_cache=0)


def test_free_zones_are_per_cpu():
    k, t = boot(ncpus=2), MallocType("x")
    a = [k.malloc(2000, t, cpu=1) for _ in range(k.backend.nmaxes[47] + 1)]
    for p in a:
        k.free(p, t, cpu=0)                               # IPIs: cpu 1 frees and caches
    assert k.stats()["slab"]["free_zones_per_cpu"] == [0, 1]
    assert zone_of(k, k.malloc(20, t, cpu=1)).cpu == 1 and k.stats()["slab"]["zones_created"] == 2


# --- M_ZERO (section 3.3) --------------------------------------------------------------------------
@pytest.mark.parametrize("bug,dirty", [(False, False), (True, True)])
def test_first_chunk_of_a_reused_zone(bug, dirty):
    k, t = boot(mzero_bug=bug), MallocType("x")
    ptrs = [k.malloc(256, t) for _ in range(2 * k.backend.nmaxes[23])]
    for p in ptrs:
        k.write(p, b"\x5a" * 256)
        k.free(p, t)
    zeroed = k.vm.bytes_zeroed
    a = k.malloc(200, t, M_ZERO)                          # zone 20 reuses the cached zone
    z = zone_of(k, a)
    assert z.flags == (0 if bug else SLZF_UNOTZEROD) and a == z.base + 168
    assert (k.read(a, 200) != bytes(200)) is dirty
    assert k.vm.bytes_zeroed - zeroed == k.backend.header_size + (0 if bug else 208)   # header, chunk


def test_m_zero_costs_nothing_on_a_fresh_zone_and_a_chunk_when_recycled():
    k, t = boot(), MallocType("x")
    z0 = k.vm.bytes_zeroed
    a = k.malloc(100, t, M_ZERO)                          # new zone: its pages are zeroed
    assert k.vm.bytes_zeroed - z0 == 32768
    k.malloc(100, t, M_ZERO)                              # never-used: already zero
    assert k.vm.bytes_zeroed - z0 == 32768
    k.write(a, b"\xff" * 104)
    k.free(a, t)
    assert k.malloc(100, t, M_ZERO) == a and k.read(a, 104) == bytes(104)
    assert k.vm.bytes_zeroed - z0 == 32768 + 104          # the chunk size, not the request


# --- realloc (section 6.1) -------------------------------------------------------------------------
def test_realloc_large_blocks_and_null():
    k, t = boot(), MallocType("x")
    a = k.malloc(8192, t)
    assert k.realloc(a, 5000, t) == a                     # round_page(5000) == 8192
    assert k.realloc(a, 100, t) != a                      # one page now: a new block
    assert k.realloc(None, 100, t) is not None and k.realloc(0xFFFFFFF8, 10, t) is not None
    b = k.malloc(100, t)
    assert k.realloc(b, 0, t) is None and b not in k.backend.live


def test_realloc_passes_m_zero_through_bug_b():
    k, t = boot(), MallocType("x")
    a = k.malloc(100, t)
    k.write(a, b"\xaa" * 104)
    assert k.realloc(a, 103, t, M_ZERO) == a and k.read(a, 104) == b"\xaa" * 104   # same chunk: nothing
    b = k.realloc(a, 300, t, M_ZERO)
    assert k.read(b, 104) == b"\xaa" * 104 and k.read(b + 104, 216) == bytes(216)  # zeroed, then copied


def test_realloc_bug_a_and_the_runtime_limit():
    k, t = boot(physmem="32M", zone_limit="runtime", realloc_bug=True), MallocType("x")
    a = k.malloc(1000, t)
    b = k.realloc(a, 9000, t)                             # zoneindex: 9216, then kmem (>= 8192)
    assert k.usable_size(b) == 12288
    with pytest.raises(kalloc.KernelPanic, match="^Unexpected byte count 16384$"):
        k.realloc(k.malloc(100, t), 16384, t)
    k2 = boot(physmem="32M", zone_limit="runtime")
    c = k2.realloc(k2.malloc(100, t), 16384, t)
    assert k2.usable_size(c) == 16384


# --- the small-memory quirk (section 2.4) --------------------------------------------------------
def test_zone_71_at_32k_panics_where_1_1_corrupts():
    k, t = boot(), MallocType("x")
    a = k.malloc(16000, t)
    z = zone_of(k, a)
    assert (z.nmax, z.nfree, a) == (1, 0, z.base + 16384) and k.backend.slgd[0].zone_ary[71] == [z]
    with pytest.raises(kalloc.KernelPanic, match="stayed on ZoneAry\\[71\\] while full.*zone_limit=\"runtime\""):
        k.free(a, t)
    k = boot(invariants=True)
    k.malloc(15361, t)
    with pytest.raises(kalloc.KernelPanic, match=r"^assertion: z->z_NFree > 0 in malloc$"):
        k.malloc(16383, t)
    k = boot(zone_limit="runtime")
    for _ in range(2):
        k.free(k.malloc(16000, t), t)
    assert k.stats()["classes"][71]["slabs"] == 0


# --- bad frees, INVARIANTS -----------------------------------------------------------------------
def test_bad_frees_change_nothing():
    k, t, u = boot(ncpus=2), MallocType("x"), MallocType("y")
    a = k.malloc(100, t)
    for args, exc in (((a, u), kalloc.WrongType), ((a + 8, t), kalloc.WildFree),
                      ((a, t, 2), ValueError), ((a, t, -1), ValueError)):
        with pytest.raises(exc):
            k.free(*args)
    assert (t.inuse, k.usable_size(a)) == (1, 104)
    k.free(a, t)
    with pytest.raises(kalloc.DoubleFree):
        k.free(a, t)
    with pytest.raises(kalloc.BadFree):
        k.usable_size(a)
    assert k.usable_size(0xFFFFFFF8) == 0


def test_free_null_names_the_out_of_range_kmemusage_index():
    with pytest.raises(kalloc.KernelPanic, match=r"kmemusage\[262401\], beyond the 260353-entry array"):
        boot().free(None, MallocType("x"))


def test_invariants_fill_freed_memory_with_weird_addr():
    k, t = boot(invariants=True), MallocType("x")
    a, b = k.malloc(8, t), k.malloc(1000, t)
    k.free(a, t)
    k.free(b, t)
    assert k.read(a, 8) == bytes.fromhex("dec0adde") * 2
    assert k.read(b, 68) == bytes.fromhex("dec0adde") * 16 + bytes(4)


# --- reports, CLI, config ------------------------------------------------------------------------
def test_classes_and_extra_stats_follow_the_zones():
    k, t = boot(ncpus=2), MallocType("x")
    for cpu in (0, 1):
        for _ in range(3):
            k.malloc(100, t, cpu=cpu)
    row = k.stats()["classes"][12]
    nmax = k.backend.nmaxes[12]
    assert (row["inuse"], row["free"], row["slabs"]) == (6, 2 * (nmax - 3), 2)
    assert len(k.stats()["classes"]) == NZONES
    st = k.stats()["slab"]
    assert st["zones_per_cpu"] == [1, 1] and st["version"] == "1.2"
    assert st["boot_message"] == "Slab ZoneSize set to 32KB"
    titles = [title for title, _ in k.backend.info_tables()]
    assert titles == ["Slab zones (ZoneSize 32K, vmstat -z)", "Memory statistics by type", "slab"]
    types = k.backend.info_tables()[1][1]
    assert types == [{"Type": "x", "InUse": 6, "MemUse (K)": 1, "HighUse (K)": 1, "Limit (K)": 6554,
                      "Requests": 6}]


def test_kalloc_info_prints_the_zone_table(capsys):
    assert cli_main(["info", "--backend", "slab", "--physmem", "64M"]) == 0
    out = capsys.readouterr().out
    assert "Slab zones (ZoneSize 32K, vmstat -z)" in out and "Memory statistics by type" not in out
    rows = [line.split() for line in out.splitlines() if line.startswith("zone ")]
    assert len(rows) == 72 and rows[0][2:5] == ["8", "4075", "168"] and rows[71][2:5] == ["16384", "1", "16384"]


def test_knobs_from_the_command_line_and_toml(tmp_path, capsys):
    cfg = tmp_path / "k.toml"
    cfg.write_text('backend = "slab"\n[options.slab]\nzone_limit = "runtime"\nzone_cache = 32\n')
    assert cli_main(["info", "--config", str(cfg), "--set", "remote_free=passive", "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert '"zone_limit": 8192' in out and '"zone_cache": 32' in out and '"remote_free": "passive"' in out
    assert cli_main(["info", "--backend", "slab", "--set", "zone_trim=never"]) == 2


def test_same_calls_same_addresses():
    def trace():
        k, t = boot(ncpus=2, seed=5), MallocType("x")
        ptrs = [k.malloc(s, t, cpu=s % 2) for s in range(1, 3000, 37)]
        for p in ptrs[::3]:
            k.free(p, t, cpu=1)
        return ptrs + [k.malloc(s, t) for s in (5, 500, 5000)]
    assert trace() == trace()


# --- the lead's conformance machine, under each knob ----------------------------------------------
@pytest.mark.parametrize("ncpus,options", [
    (1, {"zone_limit": "runtime"}),
    (4, {"zone_limit": "runtime"}),
    (2, {"physmem": "128M"}),
    (4, {"physmem": "128M", "remote_free": "passive", "zone_trim": "malloc", "zone_cache": 0}),
    (3, {"zone_limit": "runtime", "mzero_bug": True, "arch": "amd64"}),
])
def test_conformance_machine(ncpus, options):
    opts = dict(options)
    physmem = opts.pop("physmem", "64M")
    run_state_machine_as_test(machine_for("slab", ncpus=ncpus, physmem=physmem, **opts),
                              settings=settings(max_examples=60, stateful_step_count=50, deadline=None))
