"""The slub backend's paths and counters (tests/test_slub_reference.py checks its geometry
against the real kernel): the lockless CPU freelist, remote frees without IPIs, partial
lists under list_lock, empty slabs released beyond min_partial, kmalloc kinds and
kmalloc_large, merging, constructors, determinism."""

from __future__ import annotations

import json

import pytest

import kalloc
from kalloc import M_NOWAIT, M_WAITOK, M_ZERO, MallocType
from kalloc.backends import slub as S
from kalloc.backends.slub import MAX_FULL_SHEAVES
from kalloc.harness import RunSpec, run_one
from kalloc_compat import linux as lx


def boot(ncpus=2, **opts):
    k = kalloc.boot("slub", ncpus=ncpus, **opts)
    return k, k.backend, MallocType("t")


def test_fast_path_is_one_local_cmpxchg():
    k, be, t = boot()
    a = k.malloc(64, t)                          # a new slab: slow path
    before = be.counters()
    b = k.malloc(64, t)
    k.free(b, t)
    after = be.counters()
    assert {c: after[c] - before[c] for c in after} == {
        "lock_acquires": 0, "crit_sections": 2, "remote_frees": 0, "remote_cas": 0, "cold_allocs": 1}
    assert k.malloc(64, t) == b                  # LIFO: the CPU's freelist head
    k.free(a, t)


def test_remote_free_moves_the_slab_line_not_an_ipi():
    k, be, t = boot()
    objs = [k.malloc(192, t, cpu=0) for _ in range(5)]
    ipis, misses = k.machine.ipis, k.machine.lines.misses
    k.free(objs[0], t, cpu=1)                    # cpu 0's frozen slab: slab->freelist
    assert (be.remote_frees, be.remote_cas, be.lock_acquires) == (1, 1, 0)
    k.free(objs[1], t, cpu=1)                    # the line is cpu 1's now: a local cmpxchg
    assert be.remote_cas == 1 and be.remote_frees == 2
    assert k.machine.ipis == ipis
    # cpu 0 runs its freelist dry, then takes the remote frees back (get_freelist): a miss
    while be.kmalloc_caches[0][2].cpus[0].freelist:
        k.malloc(192, t, cpu=0)
    got = k.malloc(192, t, cpu=0)
    assert got == objs[1] and k.machine.lines.misses == misses + 1


def test_one_cpu_never_counts_a_remote_cas():
    k, be, t = boot(ncpus=1)
    objs = [k.malloc(512, t) for _ in range(200)]
    for a in objs:
        k.free(a, t)
    assert be.remote_cas == 0 and be.remote_frees == 0 and be.lock_acquires > 0


def test_partial_lists_and_min_partial():
    """Full slabs freed into go to the freeing CPU's partial list; beyond cpu_partial_slabs
    they are drained to the node under list_lock, and empty ones beyond min_partial go back
    to the page allocator."""
    k, be, t = boot(ncpus=1)
    s = be.kmalloc_caches[0][9]                  # kmalloc-512: 8 objects a slab on 1 CPU
    g = s.geo
    assert (g.objects, g.cpu_partial_slabs, g.min_partial) == (8, 13, 5)
    objs = [k.malloc(512, t) for _ in range(8 * 40)]
    assert s.nr_slabs == 40 and be.slabs_freed == 0
    pages = k.machine.free_count
    locks = be.lock_acquires
    for a in objs:
        k.free(a, t)
    assert be.lock_acquires > locks              # __put_partials took list_lock
    assert len(s.partial) >= g.min_partial and be.slabs_freed > 0
    assert s.nr_slabs == 40 - be.slabs_freed and k.machine.free_count > pages
    assert len(s.cpus[0].partial) <= g.cpu_partial_slabs
    assert be.extra_stats()["slub"]["node_partial_slabs"] == len(s.partial)


def test_kmalloc_large_and_kinds():
    k, be, t = boot()
    a = k.malloc(9000, t, M_ZERO)
    assert k.usable_size(a) == 16384 and a % 16384 == 0 and k.read(a, 9000) == bytes(9000)
    k.free(a, t)
    with pytest.raises(kalloc.DoubleFree):
        k.free(a, t)
    assert k.malloc(S.KMALLOC_MAX_SIZE + 1, t, M_NOWAIT) is None
    with pytest.raises(kalloc.KernelPanic, match="MAX_PAGE_ORDER"):
        k.malloc(S.KMALLOC_MAX_SIZE + 1, t)
    for gfp, name in ((lx.GFP_KERNEL, "kmalloc-96"), (lx.GFP_KERNEL_ACCOUNT, "kmalloc-cg-96"),
                      (lx.GFP_KERNEL | lx.__GFP_RECLAIMABLE, "kmalloc-rcl-96"),
                      (lx.GFP_KERNEL_ACCOUNT | lx.__GFP_RECLAIMABLE, "kmalloc-rcl-96"),
                      (lx.GFP_DMA | lx.GFP_KERNEL, "dma-kmalloc-96")):
        v = be.malloc_gfp(80, t, gfp)
        assert be.page_slab[v >> S.PAGE_SHIFT].cache.name == name
        k.free(v, t)
    assert k.malloc(0, t) == S.ZERO_SIZE_PTR and k.free(S.ZERO_SIZE_PTR, t) is None


def test_cache_merging_as_find_mergeable():
    k, be, t = boot()
    a = k.cache_create("a_obj", 60)               # 64 after alignment: merges with kmalloc-rcl-64? no:
    assert a.impl.name == "a_obj"                 # kmalloc-64 is SLAB_NO_MERGE, the other kinds differ
    b = k.cache_create("b_obj", 64)               # same size and MERGE_SAME flags: an alias
    assert b.impl is a.impl and a.impl.aliases == ["b_obj"] and a.impl.geo.object_size == 64
    cg = k.cache_create("acct", 64, flags=lx.SLAB_ACCOUNT)
    assert cg.impl.name == "kmalloc-cg-64"        # SLAB_ACCOUNT: merged into the CGROUP kind
    for flags, ctor in ((lx.SLAB_TYPESAFE_BY_RCU, None), (0, lambda kern, va: None)):
        c = k.cache_create(f"own{flags}", 64, flags=flags, ctor=ctor)
        assert c.impl.name == c.name               # never merged
    x = k.cache_alloc(b)
    k.cache_destroy(a)                            # a reference less; b still serves
    assert b.impl in be.caches
    k.cache_free(b, x)
    k.cache_destroy(b)
    assert b.impl not in be.caches and all(sl.cache is not b.impl for sl in be.page_slab.values())
    k2 = kalloc.boot("slub", ncpus=2, merge=False)
    assert k2.cache_create("b_obj", 64).impl.name == "b_obj"


def test_ctor_runs_when_the_slab_is_populated():
    k, be, t = boot()
    seen = []
    c = k.cache_create("ctor_obj", 100, ctor=lambda kern, va: seen.append(va))
    x = k.cache_alloc(c)
    assert len(seen) == c.impl.geo.objects and x in seen
    k.cache_free(c, x)
    k.cache_alloc(c)
    assert len(seen) == c.impl.geo.objects        # reused objects keep their constructed state


def test_cache_objects_are_not_kfreed():
    k, be, t = boot()
    c = k.cache_create("obj", 100, align=64)
    x = k.cache_alloc(c, M_WAITOK | M_ZERO, cpu=1)
    assert x % 64 == 0 and k.usable_size(x) == 128
    with pytest.raises(kalloc.WrongType, match="cache_free"):
        k.free(x, c.mtype)
    row = k.stats()["caches"][0]
    assert (row["slab_size"], row["align"], row["active_objs"]) == (128, 64, 1)
    assert "obj " in be.slabinfo()


def test_sheaves_main_spare_and_barn():
    """6.18's sheaves: allocations pop the CPU's main sheaf (refilled from the slabs 32 at a
    time), frees push the freeing CPU's (no remote cmpxchg), full sheaves go to the barn under
    its lock, and beyond MAX_FULL_SHEAVES the frees reach the slabs again."""
    k, be, t = boot(sheaves=32)
    c = k.cache_create("vm_area_struct", 192)
    s = c.impl
    twin = k.cache_create("twin", 192)
    assert s.geo.sheaf_capacity == 32 and twin.impl is not s   # caches with sheaves are not merged
    k.cache_destroy(twin)
    objs = [k.cache_alloc(c, cpu=0) for _ in range(64)]
    assert be.lock_acquires == 0 and len(s.pcs[0].main.objects) == 0
    before = be.counters()
    x = k.cache_alloc(c, cpu=0)                  # the spare is empty too: a refill of 32
    assert be.crit_sections - before["crit_sections"] >= 32 and len(s.pcs[0].main.objects) == 31
    k.cache_free(c, x, cpu=0)
    objs += [k.cache_alloc(c, cpu=0) for _ in range(32 * 14)]
    cas = be.remote_cas
    for a in objs[:64 + 32 * 10]:                # spare, ten barn sheaves and main on cpu 1
        k.cache_free(c, a, cpu=1)
    assert be.remote_cas == cas and len(s.barn_full) == MAX_FULL_SHEAVES
    assert len(s.pcs[1].main.objects) == len(s.pcs[1].spare.objects) == 32
    k.cache_free(c, objs[64 + 32 * 10], cpu=1)   # the barn is full: the spare is flushed
    assert be.remote_cas > cas and len(s.pcs[1].main.objects) == 1
    for a in objs[64 + 32 * 10 + 1:]:
        k.cache_free(c, a, cpu=1)
    assert len(s.barn_full) == MAX_FULL_SHEAVES
    got = [k.cache_alloc(c, cpu=1) for _ in range(64)]
    assert set(got) <= set(objs)                 # cpu 1 reuses what it freed
    locks = be.lock_acquires
    got += [k.cache_alloc(c, cpu=1) for _ in range(32)]
    assert be.lock_acquires == locks + 1 and len(s.barn_full) == MAX_FULL_SHEAVES - 1   # a full one taken
    for a in got:
        k.cache_free(c, a, cpu=0)
    with pytest.raises(kalloc.DoubleFree):
        k.cache_free(c, got[0], cpu=0)
    k.cache_destroy(c)
    assert k.types["slab_sheaf"].inuse == 0 and all(sl.cache is not s for sl in be.page_slab.values())


def test_sheaves_random_use_keeps_objects_apart():
    import random
    rng = random.Random(5)
    k, be, t = boot(sheaves=8)
    c = k.cache_create("obj", 100)
    live = {}
    for _ in range(3000):
        if live and rng.random() < 0.48:
            a = rng.choice(sorted(live))
            assert k.read(a, 4) == live.pop(a)
            k.cache_free(c, a, cpu=rng.randrange(2))
        else:
            a = k.cache_alloc(c, cpu=rng.randrange(2))
            assert a not in live
            tag = a.to_bytes(4, "little")
            k.write(a, tag)
            live[a] = tag
    assert len(c.live) == len(live) == k.types["obj"].inuse
    for a in list(live):
        k.cache_free(c, a)
    k.cache_destroy(c)


def test_same_seed_same_json():
    spec = RunSpec("slub", "fs", 2, 7, "64M", "i386", {}, {"cache": 200, "turnover": 300}, {}, 0)
    one, two = (json.dumps({**run_one(spec), "wall_seconds": None}, sort_keys=True) for _ in range(2))
    assert one == two


def test_options_checked():
    with pytest.raises(ValueError, match="sheaves"):
        kalloc.boot("slub", sheaves=-1)
    with pytest.raises(ValueError, match="slub_min_order"):
        kalloc.boot("slub", slub_min_order=4, slub_max_order=2)
    k = kalloc.boot("slub", ncpus=2, slub_max_order=0)
    assert max(s.geo.order for s in k.backend.caches) == 1      # 8k needs its own order: get_order


def test_krealloc_keeps_a_block_in_place_while_ksize_covers_it():
    """__do_krealloc returns p when the new size fits ksize(p): a 65-byte block in kmalloc-96
    shrunk to 64 keeps its 96-byte slot, at an address that is not 64-aligned (so the
    conformance suite checks natural alignment only of blocks malloc or a moving realloc gives)."""
    k, _, t = boot(ncpus=1)
    k.malloc(65, t, M_WAITOK, 0)
    b = k.malloc(65, t, M_WAITOK, 0)
    assert k.usable_size(b) == 96 and b % 64
    assert k.realloc(b, 64, t, M_WAITOK, 0) == b
    moved = k.realloc(b, 97, t, M_WAITOK, 0)
    assert moved != b and k.usable_size(moved) == 128 and moved % 128 == 0
