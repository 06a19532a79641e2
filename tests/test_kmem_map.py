"""The kmem_map backend against the numbers of docs/research/kmem_map.md sections 1 and 2."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import kalloc
from kalloc import M_NOWAIT, M_NULLOK, M_USE_RESERVE, M_WAITOK, M_ZERO, MallocType
from kalloc.backends.kmem_map import (MAXALLOCSAVE, KmemMapBackend, bucketindx, elmpercl, kmem_map_size,
                                      kmem_page_class, size_names, type_limit, vmstat_m)
from kalloc.costs import CostModel
from kalloc.errors import Deadlock, DoubleFree, KernelPanic, WildFree, WrongType
from kalloc.harness import Simulator
from kalloc.machine import VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM
from kalloc.workload import free, malloc, work

MiB = 1 << 20
BIG = 1 << 40          # a type limit that never matters


def boot(**kw):
    kw.setdefault("physmem", "64M")
    return kalloc.boot("kmem_map", **kw)


def first_page(k) -> int:
    """Where kmem_map's free malloc space starts: above mclrefcnt's page(s) and mb_map."""
    return k.backend.mb_map.max_offset


# --- BUCKETINDX and the bucket table (section 1.4) -----------------------------------------------
def bucketindx_macro(size):
    """sys/malloc.h 1.48.2.2's BUCKETINDX, the nested conditional as written (MINBUCKET 4)."""
    M = 16
    if size <= M * 128:
        if size <= M * 8:
            if size <= M * 2:
                return 4 if size <= M * 1 else 5
            return 6 if size <= M * 4 else 7
        if size <= M * 32:
            return 8 if size <= M * 16 else 9
        return 10 if size <= M * 64 else 11
    if size <= M * 2048:
        if size <= M * 512:
            return 12 if size <= M * 256 else 13
        return 14 if size <= M * 1024 else 15
    if size <= M * 8192:
        return 16 if size <= M * 4096 else 17
    return 18 if size <= M * 16384 else 19


@pytest.mark.parametrize("size,indx", [
    (0, 4), (1, 4), (16, 4), (17, 5), (32, 5), (33, 6), (64, 6), (65, 7), (128, 7), (129, 8),
    (256, 8), (257, 9), (512, 9), (513, 10), (1024, 10), (1025, 11), (2048, 11), (2049, 12),
    (4096, 12), (4097, 13), (8192, 13), (8193, 14), (16384, 14), (16385, 15), (262144, 18),
    (262145, 19), (1 << 30, 19)])
def test_bucketindx_boundaries(size, indx):
    assert bucketindx(size) == indx


def test_bucketindx_is_the_macro_for_every_small_size():
    assert all(bucketindx(n) == bucketindx_macro(n) for n in range(0, 300000))


@given(st.integers(min_value=0, max_value=1 << 40))
def test_bucketindx_is_the_macro(size):
    assert bucketindx(size) == bucketindx_macro(size)


def test_bucket_table():
    """kb_elmpercl and kb_highwat as kmeminit sets them (the table of section 1.4)."""
    k = boot()
    rows = {r["size"]: r for r in k.stats()["classes"]}
    want = {16: 256, 32: 128, 64: 64, 128: 32, 256: 16, 512: 8, 1024: 4, 2048: 2, 4096: 1, 8192: 1}
    assert {s: r["objs_per_slab"] for s, r in rows.items()} == want
    assert {s: r["highwat"] for s, r in rows.items()} == {s: 5 * n for s, n in want.items()}
    assert {s: r["slab_bytes"] for s, r in rows.items()} == {s: max(4096, s) for s in want}
    assert all(r["first_offset"] == 0 for r in rows.values())
    # at boot only cpu_startup's mclrefcnt (1536 bytes at 64 MiB) is live, in the 2048 bucket
    assert {s: (r["slabs"], r["inuse"], r["free"]) for s, r in rows.items() if r["slabs"]} == {2048: (1, 1, 1)}
    assert elmpercl(14) == 1 and MAXALLOCSAVE == 8192


# --- kmeminit sizing (section 1.5) ------------------------------------------------------------
@pytest.mark.parametrize("ram,vks,users,clusters,mbuf,kmem_map,limit", [
    (16 * MiB, 12 * MiB, 32, 1024, 3 * MiB, 15 * MiB, 6 * MiB),
    (64 * MiB, 22369621, 32, 1024, 3 * MiB, 25513984, 11184810),
    (128 * MiB, 44739242, 64, 1536, 4718592, 49455104, 22369621),
    (256 * MiB, 89478485, 128, 2560, 7864320, 97341440, 44739242),
    (512 * MiB, 178956970, 256, 4608, 14155776, 193110016, 89478485),
    (1024 * MiB, 200 * MiB, 384, 6656, 20447232, 230162432, 100 * MiB),
    (4095 * MiB, 200 * MiB, 384, 6656, 20447232, 230162432, 100 * MiB),
    # cnt.v_page_count * PAGE_SIZE is a 32-bit u_int: 4 GiB wraps to 0, and so does vm_kmem_size
    (4096 * MiB, 0, 384, 6656, 20447232, 20447232, 0),
])
def test_kmem_map_sizing_table(ram, vks, users, clusters, mbuf, kmem_map, limit):
    s = kmem_map_size(ram)
    assert (s.vm_kmem_size, s.maxusers, s.nmbclusters, s.nmbufs) == (vks, users, clusters, 4 * clusters)
    assert s.mb_map_size == mbuf and s.kmem_map_size == kmem_map and s.npg == kmem_map // 4096
    assert type_limit(s.vm_kmem_size) == limit


def test_kmem_map_sizing_overrides():
    assert kmem_map_size(16 * MiB, vm_kmem_size=20 * MiB).vm_kmem_size == 20 * MiB
    assert kmem_map_size(16 * MiB, vm_kmem_size=64 * MiB).vm_kmem_size == 32 * MiB   # at most 2 x RAM
    s = kmem_map_size(64 * MiB, maxusers=100)
    assert (s.maxusers, s.nmbclusters, s.nmbufs) == (100, 2112, 8448)
    assert s.mb_map_size == 8448 * 256 + 2112 * 2048


def test_kmem_map_sizing_in_64_bits_on_amd64():
    assert kmem_map_size(4096 * MiB, word_bits=64).vm_kmem_size == 200 * MiB
    assert kalloc.boot("kmem_map", physmem="8G", arch="amd64").backend.sizes.vm_kmem_size == 200 * MiB


def test_boot_refuses_what_4_8_cannot_size():
    with pytest.raises(ValueError, match="vm_kmem_size is 0 with 4294967296 bytes of RAM: .* wraps to 0"):
        boot(physmem="4G")
    assert boot(physmem="4095M").backend.sizes.vm_kmem_size == 200 * MiB
    # a tunable so small that cpu_startup's first malloc fails (type limit 0)
    with pytest.raises(ValueError, match=r"malloc of mclrefcnt \(1536 bytes, M_NOWAIT\) fails"):
        boot(vm_kmem_size=1)
    # npg's u_long sum wraps: a 20 MB kmem_map cannot hold the 20 MB mb_map
    s = kmem_map_size(2048 * MiB, vm_kmem_size=(1 << 32) - 1)
    assert s.npg == 4991 and s.mb_map_size == 4992 * 4096
    with pytest.raises(ValueError, match='mb_map of 20447232 bytes does not fit in kmem_map of 20443136 bytes.*'
                                         '"kmem_suballoc"'):
        boot(physmem="2048M", vm_kmem_size=(1 << 32) - 1)


@pytest.mark.parametrize("physmem,vks", [("16M", 12 * MiB), ("64M", 22369621), ("512M", 178956970),
                                         ("1G", 200 * MiB)])
def test_boot_layout(physmem, vks):
    k = boot(physmem=physmem)
    be, vm = k.backend, k.vm
    s = be.sizes
    assert s.vm_kmem_size == vks
    kva_min = k.machine.arch.kva_min
    ku_bytes = -(-s.npg * 4 // 4096) * 4096
    # kmemusage first (kmem_alloc: wired, zeroed), then the kmem_map submap right after it
    assert be.kmemusage_va == kva_min and be.kmembase == kva_min + ku_bytes
    assert be.kmemlimit - be.kmembase == s.kmem_map_size
    # cpu_startup: mclrefcnt, one zeroed byte per cluster (type mbuf), is the first malloc: a
    # bucket chunk or large block in the page(s) at kmembase; then mb_map, first fit above it
    refcnt = s.mb_map_size // 2048
    held = -(-k.usable_size(be.mclrefcnt) // 4096) * 4096
    assert be.mclrefcnt & ~4095 == be.kmembase and k.usable_size(be.mclrefcnt) >= refcnt
    assert k.stats()["types"]["mbuf"]["memuse"] == k.usable_size(be.mclrefcnt)
    assert k.machine.npages - k.machine.free_count == (ku_bytes + held) // 4096
    assert vm.bytes_zeroed == ku_bytes + refcnt
    assert (be.mb_map.min_offset, be.mb_map.max_offset) == (be.kmembase + held, be.kmembase + held + s.mb_map_size)
    # what is left is trunc_page(vm_kmem_size), less mclrefcnt's page(s)
    assert be.kmem_map.free_bytes == vks // 4096 * 4096 - held
    assert k.stats()["kmem_map"]["map_free"] == vks // 4096 * 4096 - held
    t = MallocType("devbuf")
    k.malloc(8, t)
    assert t.limit == vks // 2


def test_kmemusage_pages_are_zero_class_pages_from_the_bottom():
    """kmem_alloc asks for VM_ALLOC_ZERO pages: the tail of each colour queue under 4.8."""
    k = boot()
    assert [k.vtophys(k.backend.kmemusage_va + i * 4096) for i in range(7)] == [i * 4096 for i in range(7)]
    k2 = boot(page_policy="2003-09-14")
    assert k2.vtophys(k2.backend.kmemusage_va) >> 12 > k2.machine.npages - 64


def test_kmem_map_too_big_for_the_kernel_map():
    with pytest.raises(ValueError, match="does not fit in the i386 kernel map"):
        boot(physmem="2G", vm_kmem_size=2047 * MiB)
    with pytest.raises(ValueError, match="vm_kmem_size"):
        boot(vm_kmem_size=1 << 33)


# --- refill, carving order, LIFO (sections 1.7, 1.8) -------------------------------------------
def test_refill_carves_from_the_top_down():
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    base = first_page(k)
    got = [k.malloc(64, t) for _ in range(3)]
    assert got == [base + 4096 - 64, base + 4096 - 128, base + 4096 - 192]
    assert be.kmemusage(got[0]) == (6, 61)               # ku_indx 6, ku_freecnt 64 - 3
    assert be.buckets[6].total == 64 and be.buckets[6].totalfree == 61
    assert list(be.buckets[6].free_list())[:2] == [base + 4096 - 256, base + 4096 - 320]
    # the next bucket gets the next page, carved the same way
    assert k.malloc(16, t) == base + 4096 + 4096 - 16
    assert be.kmemusage(base + 4096) == (4, 255)
    # 8 KiB: one chunk per two-page refill; only the first page's kmemusage is written
    a = k.malloc(5000, t)
    assert a == base + 2 * 4096 and be.kmemusage(a) == (13, 0) and be.kmemusage(a + 4096) == (0, 0)
    assert k.usable_size(a) == 8192


def test_whole_refill_in_descending_order_then_next_page():
    k = boot()
    t = MallocType("devbuf")
    base = first_page(k)
    got = [k.malloc(1000, t) for _ in range(5)]
    assert got == [base + 3072, base + 2048, base + 1024, base, base + 4096 + 3072]
    assert k.stats()["classes"][6]["slabs"] == 2


def test_lifo_reuse_and_counters():
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    cold0, locks0 = be.cold_allocs, be.lock_acquires         # mclrefcnt's, at boot
    a, b = k.malloc(100, t), k.malloc(100, t)
    assert be.cold_allocs - cold0 == 2 and be.lock_acquires - locks0 == 2   # carved from a fresh page
    k.free(a, t)
    k.free(b, t)
    assert be.lock_acquires - locks0 == 4
    assert k.malloc(120, t) == b and k.malloc(128, t) == a   # last freed, first reused
    assert be.cold_allocs - cold0 == 2                        # reused: not cold
    assert k.malloc(65, t) == b - 128 and be.cold_allocs - cold0 == 3  # then the untouched carve


def test_malloc_zero_takes_a_16_byte_chunk():
    k = boot()
    t = MallocType("devbuf")
    a = k.malloc(0, t)
    assert k.usable_size(a) == 16 and t.memuse == 16 and k.backend.kmemusage(a)[0] == 4


def test_bucket_memory_is_never_returned():
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    wired0, used0 = k.footprint(), be.kmem_map.size
    ptrs = [k.malloc(64, t) for _ in range(200)]
    grown = k.footprint()
    assert grown - wired0 == 4 * 4096                     # 200 chunks = 4 refills
    for p in ptrs:
        k.free(p, t)
    assert k.footprint() == grown and be.kmem_map.size == used0 + 4 * 4096
    row = k.stats()["classes"][2]
    assert (row["inuse"], row["free"], row["slabs"], row["calls"]) == (0, 256, 4, 200)
    assert (t.inuse, t.memuse, t.maxused) == (0, 0, 200 * 64)


def test_couldfree_counts_whole_free_pages_above_highwat():
    k = boot()
    t = MallocType("devbuf")
    ptrs = [k.malloc(4096, t) for _ in range(7)]
    for p in ptrs:
        k.free(p, t)
    row = k.stats()["classes"][8]
    assert (row["size"], row["highwat"], row["free"], row["couldfree"]) == (4096, 5, 7, 1)


def test_free_multiple_frees_is_the_page_counter():
    """4.8's only double-free check: ku_freecnt going past kb_elmpercl.  kalloc's live
    check comes first, so reach it the way 4.8 would: a chunk freed twice unnoticed."""
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    a = k.malloc(4096, t)
    k.free(a, t)
    be.live[a] = t
    t.inuse += 1
    with pytest.raises(KernelPanic, match="^free: multiple frees$"):
        k.free(a, t)


# --- large allocations ------------------------------------------------------------------------------
@pytest.mark.parametrize("size,pages,indx", [(8193, 3, 14), (12288, 3, 14), (16385, 5, 15), (100000, 25, 17),
                                             (262145, 65, 19)])
def test_large_allocations_take_whole_pages(size, pages, indx):
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    free0, used0 = k.machine.free_count, be.kmem_map.size
    a = k.malloc(size, t)
    assert a == first_page(k) and k.usable_size(a) == pages * 4096
    assert be.kmemusage(a) == (indx, pages)                # ku_indx, ku_pagecnt
    assert t.memuse == pages * 4096 and k.machine.free_count == free0 - pages
    assert k.stats()["kmem_map"]["large_pages"] == pages
    k.free(a, t)
    assert k.machine.free_count == free0 and be.kmem_map.size == used0
    assert be.kmemusage(a) == (0, 0) and t.memuse == 0
    assert be.buckets[indx].calls == 1 and be.buckets[indx].total == 0


def test_large_free_shoots_down_tlbs_on_smp():
    for ncpus, shootdowns in ((1, 0), (2, 1)):
        k = boot(ncpus=ncpus)
        t = MallocType("devbuf")
        a = k.malloc(20000, t)
        k.free(a, t, cpu=ncpus - 1)
        assert k.vm.tlb_shootdowns == shootdowns and k.vm.pages_unmapped == 5


def test_allocation_too_large_panics_after_kmem_malloc():
    k = kalloc.boot("kmem_map", physmem="1G", arch="amd64", vm_kmem_size=600 * MiB)
    t = MallocType("huge", limit=BIG)
    with pytest.raises(KernelPanic, match="^malloc: allocation too large$"):
        k.malloc(65536 * 4096, t, M_NOWAIT)


# --- M_ZERO and realloc ------------------------------------------------------------------------------
def test_m_zero_zeroes_the_requested_size_only():
    k = boot()
    t = MallocType("devbuf")
    a = k.malloc(64, t)
    k.write(a, b"\xff" * 64)
    k.free(a, t)
    z0 = k.vm.bytes_zeroed
    assert k.malloc(40, t, M_WAITOK | M_ZERO) == a
    assert k.read(a, 64) == bytes(40) + b"\xff" * 24
    assert k.vm.bytes_zeroed - z0 == 40


def test_realloc_in_place_rule():
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    a = k.malloc(50, t)                    # a 64-byte chunk
    locks = be.lock_acquires
    assert k.realloc(a, 64, t) == a and k.realloc(a, 33, t) == a
    assert be.lock_acquires == locks + 2   # Giant, one each
    s = k.malloc(10, t)                    # a 16-byte chunk shrinks in place to anything
    assert k.realloc(s, 0, t) == s
    big = k.malloc(10000, t)               # 12288 bytes: in place above 6144
    assert k.realloc(big, 6145, t) == big and k.realloc(big, 12288, t) == big


def test_realloc_moves_and_copies_min_of_size_and_alloc():
    k = boot()
    be, t = k.backend, MallocType("devbuf")
    a = k.malloc(50, t)
    k.write(a, bytes(range(64)))
    c0, locks = k.vm.bytes_copied, be.lock_acquires
    b = k.realloc(a, 100, t)               # grows: the whole old 64-byte chunk is copied
    assert b != a and k.usable_size(b) == 128 and k.read(b, 64) == bytes(range(64))
    assert k.vm.bytes_copied - c0 == 64 and be.lock_acquires == locks + 2
    c = k.realloc(b, 64, t)                # 64 <= 128 / 2: moves down, copies 64
    assert k.usable_size(c) == 64 and k.vm.bytes_copied - c0 == 128
    assert (t.inuse, t.memuse) == (1, 64)
    assert k.realloc(None, 10, t) is not None


def test_realloc_failure_keeps_the_old_block():
    k = boot()
    t = MallocType("lim", limit=4096)
    a = k.malloc(4096, t)
    assert k.realloc(a, 5000, t, M_NOWAIT) is None
    assert k.usable_size(a) == 4096 and t.inuse == 1


# --- the per-type limit (section 1.6) ----------------------------------------------------------
def test_limit_nowait_returns_null_and_is_tested_before_adding():
    k = boot()
    t = MallocType("lim", limit=4000)
    a = k.malloc(4096, t, M_NOWAIT)        # memuse 0 < 4000: allowed, and overshoots
    assert a is not None and t.memuse == 4096
    assert k.malloc(16, t, M_NOWAIT) is None and k.malloc(16, t, M_NULLOK) is None
    assert t.calls == 1 and k.backend.limblocks.get(t, 0) == 0
    k.free(a, t)
    assert k.malloc(16, t, M_NOWAIT) is not None


def test_limit_waitok_sleeps_on_the_type():
    k = boot()
    be, t = k.backend, MallocType("lim", limit=4096)
    k.malloc(4096, t)
    before = (t.memuse, t.inuse, t.calls, be.kmem_map.size, [b.totalfree for b in be.buckets])
    with pytest.raises(Deadlock, match=r"^malloc\(16, 'lim', M_WAITOK\) on cpu 0 sleeps on 'lim': "
                                       r"malloc limit 4096 reached$") as e:
        k.malloc(16, t)
    assert e.value.channel is t
    assert (t.memuse, t.inuse, t.calls, be.kmem_map.size, [b.totalfree for b in be.buckets]) == before
    assert be.limblocks[t] == 1


def test_limit_sleeper_is_woken_by_a_free_in_the_harness():
    k = boot(ncpus=2)
    k.malloc_type("lim", limit=4096)
    sim = Simulator(k, CostModel.from_config({}))
    done = []

    def holder():
        h = yield malloc(4096, "lim")
        yield work(10000)
        yield free(h)

    def waiter():
        yield work(100)
        h = yield malloc(4096, "lim")       # sleeps until holder frees
        done.append(sim.engine.now)
        yield free(h)

    sim.add_thread(0, "holder", holder())
    sim.add_thread(1, "waiter", waiter())
    sim.run()
    assert done and done[0] >= 10000 and k.backend.limblocks[k.types["lim"]] >= 1


def test_limit_sleeper_with_nobody_to_free_is_a_deadlock():
    k = boot()
    k.malloc_type("lim", limit=4096)
    sim = Simulator(k, CostModel.from_config({}))

    def greedy():
        yield malloc(4096, "lim")
        yield malloc(16, "lim")

    sim.add_thread(0, "greedy", greedy())
    with pytest.raises(Deadlock, match="sleeps on 'lim'.*greedy on cpu 0"):
        sim.run()


# --- kmem_malloc: KVA and pages (section 2.2) ------------------------------------------------------
def test_kmem_page_class():
    assert kmem_page_class(int(M_NOWAIT)) == VM_ALLOC_INTERRUPT
    assert kmem_page_class(int(M_NOWAIT | M_ZERO)) == VM_ALLOC_INTERRUPT
    for f in (M_NOWAIT | M_USE_RESERVE, M_WAITOK, M_ZERO, M_NULLOK, M_WAITOK | M_USE_RESERVE):
        assert kmem_page_class(int(f)) == VM_ALLOC_SYSTEM


def test_kmem_map_too_small_panics_unless_the_caller_takes_null():
    k = boot(physmem="16M", vm_kmem_size=MiB + 4096)   # 257 pages, 256 after mclrefcnt's
    be, t = k.backend, MallocType("big", limit=BIG)
    assert k.malloc(512 * 1024, t) is not None and k.malloc(512 * 1024, t) is not None
    assert be.kmem_map.free_bytes == 0
    assert k.malloc(65536, t, M_NOWAIT) is None and k.malloc(65536, t, M_NULLOK) is None
    with pytest.raises(KernelPanic, match=r"^kmem_malloc\(61440\): kmem_map too small: 4198400 total allocated$"):
        k.malloc(60000, t)                               # the page-rounded size, map->size
    with pytest.raises(KernelPanic, match=r"^kmem_malloc\(4096\): kmem_map too small"):
        k.malloc(100, t, M_WAITOK | M_ZERO)             # a bucket refill asks for a page


def test_page_shortage_waitok_sleeps_nowait_gets_null():
    """SYSTEM pages (waiting callers, M_NOWAIT|M_USE_RESERVE) stop at v_interrupt_free_min
    = 2 free pages; INTERRUPT pages (plain M_NOWAIT) at 0 (section 2.3)."""
    k = boot(physmem="4M")
    m, be, t = k.machine, k.backend, MallocType("big", limit=BIG)
    assert (m.v_free_reserved, m.v_interrupt_free_min) == (75, 2)
    with pytest.raises(Deadlock, match=r'^malloc\(32768, .big., M_WAITOK\) on cpu 0 sleeps on "vmwait": '
                                       r'kmem_malloc\(32768\) is short of pages \(4 free\)$') as e:
        while True:
            k.malloc(32768, t)
    assert e.value.channel == "vmwait" and m.free_count == 4
    used = be.kmem_map.size                              # the failed call was undone
    assert k.malloc(32768, t, M_NULLOK) is None and (be.kmem_map.size, m.free_count) == (used, 4)
    got = []
    while (a := k.malloc(4096, t, M_NOWAIT | M_USE_RESERVE)) is not None:   # one page per refill
        got.append(a)
    assert (len(got), m.free_count) == (2, 2)
    while (a := k.malloc(4096, t, M_NOWAIT)) is not None:
        got.append(a)
    assert (len(got), m.free_count) == (4, 0) and be.kmem_map.size == used + 4 * 4096


# --- free ---------------------------------------------------------------------------------------
def test_free_null_returns_after_the_type_check():
    k = boot()
    t = MallocType("fresh")
    locks0 = k.backend.lock_acquires                     # mclrefcnt's malloc, at boot
    k.free(None, t)
    k.free(0, t)
    assert k.types["fresh"] is t and k.backend.lock_acquires == locks0
    with pytest.raises(TypeError):
        k.free(None, "devbuf")


def test_bad_frees_are_classified_before_any_change():
    k = boot()
    t, u = MallocType("devbuf"), MallocType("other")
    a, big = k.malloc(100, t), k.malloc(20000, t)
    with pytest.raises(WrongType):
        k.free(a, u)
    assert (t.inuse, u.inuse) == (2, 0) and k.usable_size(a) == 128
    with pytest.raises(WildFree, match="interior"):
        k.free(a + 16, t)
    with pytest.raises(WildFree, match="never allocated"):
        k.free(k.backend.kmembase + 4096, t)             # inside mb_map
    k.free(a, t)
    with pytest.raises(DoubleFree):
        k.free(a, t)
    with pytest.raises(DoubleFree):
        k.free(a - 128, t)                               # a carved chunk never handed out
    k.free(big, t)
    with pytest.raises(DoubleFree):
        k.free(big, t)
    assert (t.inuse, t.memuse) == (0, 0)


def test_same_calls_same_addresses():
    def run():
        k = boot(ncpus=2)
        t = MallocType("devbuf")
        out = [k.malloc(s, t, M_WAITOK, s % 2) for s in (1, 100, 5000, 30000, 64, 3000)]
        k.free(out[1], t)
        out.append(k.malloc(70, t))
        return out, k.stats()
    assert run() == run()


def test_amd64():
    k = boot(arch="amd64", physmem="256M")
    t = MallocType("devbuf")
    a = k.malloc(64, t)
    assert a == first_page(k) + 4096 - 64 and k.backend.sizes.vm_kmem_size == 89478485


# --- reports --------------------------------------------------------------------------------
def test_vmstat_m_is_the_4_8_layout():
    k = boot()
    dev, temp = MallocType("devbuf"), MallocType("temp")
    a = [k.malloc(s, dev) for s in (10, 10, 100, 5000, 20000)]
    k.malloc(10, temp)
    k.free(a[0], dev)
    assert vmstat_m(k.backend) == (
        "Memory statistics by bucket size\n"
        "Size   In Use   Free   Requests  HighWater  Couldfree\n"
        "  16        2    254          3    1280          0\n"
        " 128        1     31          1     160          0\n"
        "  2K        1      1          1      10          0\n"
        "  8K        1      0          1       5          0\n"
        " 32K        1      0          1       5          0\n"
        "\n"
        "Memory usage type by bucket size\n"
        "Size  Type(s)\n"
        "  16  temp, devbuf\n"
        " 128  devbuf\n"
        "  2K  mbuf\n"
        "  8K  devbuf\n"
        " 32K  devbuf\n"
        "\n"
        "Memory statistics by type                          Type  Kern\n"
        "        Type  InUse MemUse HighUse  Limit Requests Limit Limit Size(s)\n"
        "         temp     1     1K      1K 10923K        1    0     0  16\n"
        "       devbuf     4    29K     29K 10923K        5    0     0  16,128,8K,32K\n"
        "         mbuf     1     2K      2K 10923K        1    0     0  2K\n"            # mclrefcnt
        "\n"
        "Memory Totals:  In Use    Free    Requests\n"
        "                   31K     10K           7\n")


def test_vmstat_m_wraps_long_type_lists():
    k = boot()
    for i in range(8):
        k.malloc(10, MallocType(f"type{i}_with_a_long_name"))
    text = vmstat_m(k.backend)
    line = text.split("Size  Type(s)\n")[1].split("\n\n")[0]
    assert line.startswith("  16  type7_with_a_long_name, type6_with_a_long_name,")
    assert ",\n\t  type" in line and all(len(x) < 90 for x in line.split("\n"))


def test_info_tables_and_extra_stats():
    k = boot()
    t = MallocType("devbuf", limit=100000)
    k.malloc(10, t)
    k.malloc(20000, t)
    tables = dict(k.backend.info_tables())
    assert [r["Size"] for r in tables["Memory statistics by bucket size"]] == [
        16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 32768]
    row = tables["Memory statistics by type"][0]
    assert row == {"Type": "devbuf", "InUse": 2, "MemUse (K)": 21, "HighUse (K)": 21, "Limit (K)": 98,
                   "Requests": 2, "Type Limit": 0, "Kern Limit": 0, "Size(s)": "16,32K"}
    km = k.stats()["kmem_map"]
    assert (km["large_live"], km["large_pages"], km["vm_kmem_size"], km["mb_map_size"]) == (1, 5, 22369621, 3 * MiB)
    assert km["large_buckets"] == [{"size": 32768, "calls": 1, "inuse": 1}]
    assert size_names([4, 9, 10, 13]) == "16,512,1K,8K"


def test_cli_info_prints_both_views():
    from kalloc.cli import main
    import contextlib, io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["info", "--backend", "kmem_map"])
    text = out.getvalue()
    assert "Memory statistics by bucket size" in text and "Memory statistics by type" in text
    assert "8192" in text and "22369621" in text


# --- INVARIANTS (section 1.10) -------------------------------------------------------------------
WEIRD = (0xDEADC0DE).to_bytes(4, "little")


def test_invariants_poison_and_chunk_content():
    k = boot(invariants=True)
    t = MallocType("devbuf")
    a = k.malloc(64, t)
    assert k.read(a, 64) == bytes(4) + WEIRD * 15            # spare0 = 0, the rest poisoned
    b = k.malloc(256, t)
    assert k.read(b, 68) == bytes(4) + WEIRD * 15 + bytes(4) # only the first 64 bytes
    k.write(a, b"A" * 64)
    k.free(a, t)
    assert k.read(a, 64) == WEIRD * 16
    assert k.backend.msgbuf == []


def test_invariants_report_data_modified_on_freelist():
    k = boot(invariants=True)
    t = MallocType("devbuf")
    a = k.malloc(64, t)
    k.free(a, t)
    k.write(a + 20, b"AAAA")                                   # a use-after-free write, word 5
    assert k.malloc(64, t) == a
    assert k.backend.msgbuf == [f"Data modified on freelist: word 5 of object {a:#x} size 64 "
                                f"previous type devbuf (0x41414141 != 0xdeadc0de)"]
    assert k.read(a + 20, 4) == b"AAAA"                        # reported, not repaired


def test_invariants_free_walks_the_list_when_the_chunk_looks_free():
    k = boot(invariants=True)
    t = MallocType("devbuf")
    a, b = k.malloc(64, t), k.malloc(64, t)
    k.free(a, t)
    k.write(a, b"ZZZZ")                                        # corrupt a free item's first word
    k.write(b, WEIRD)                                          # b looks free: 4.8 walks the list
    with pytest.raises(KernelPanic, match=rf"^free: free item {a:#x} modified$"):
        k.free(b, t)


def test_backend_class_is_registered():
    from kalloc import plugins
    assert plugins.backends()["kmem_map"][0] is KmemMapBackend
    assert KmemMapBackend.DEFAULT_PAGE_POLICY == "4.8"
    assert set(KmemMapBackend.OPTIONS) == {"vm_kmem_size", "maxusers"}
