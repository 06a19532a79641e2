"""The slab backend against the digest's hand-checked numbers (docs/research/slab.md) and its
behaviours: alignment, IPIs, FreeZones, limits, the M_ZERO bug, realloc, knobs."""

import pytest

import kalloc
from kalloc import M_NOWAIT, M_NULLOK, M_WAITOK, M_ZERO, MallocType
from kalloc.backends.slab import (CHUNK_SIZES, NZONES, first_offset, zone_header_size, zone_nmax,
                                  zone_size, zoneindex)

HAND_CHECKED = {1: (0, 8), 8: (0, 8), 9: (1, 16), 127: (15, 128), 128: (15, 128), 129: (16, 144),
                257: (24, 288), 1000: (39, 1024), 5000: (57, 5120), 15361: (71, 16384), 16383: (71, 16384)}


@pytest.mark.parametrize("n", sorted(HAND_CHECKED))
def test_zoneindex_hand_checked_rows(n):
    assert zoneindex(n) == HAND_CHECKED[n]


def test_zoneindex_exhaustively_against_the_band_table():
    bands = [(128, 8), (256, 16), (512, 32), (1024, 64), (2048, 128), (4096, 256), (8192, 512), (16384, 1024)]
    for n in range(1, 16384):
        limit, g = next(b for b in bands if n < b[0])
        chunk = -(-n // g) * g
        zi, c = zoneindex(n)
        assert c == chunk and CHUNK_SIZES[zi] == chunk, n
    assert len(CHUNK_SIZES) == NZONES == 72
    with pytest.raises(kalloc.KernelPanic, match="Unexpected byte count 16384"):
        zoneindex(16384)


@pytest.mark.parametrize("mib,zs", [(16, 32), (32, 32), (64, 32), (65, 64), (128, 64), (129, 128),
                                    (256, 128), (1024, 128), (4096, 128)])
def test_zone_size(mib, zs):
    assert zone_size(mib << 20) == zs << 10
    k = kalloc.boot(physmem=f"{min(mib, 4096)}M")
    assert k.stats()["slab"]["zone_size"] == zs << 10


def test_header_and_first_offsets():
    assert zone_header_size("i386", "1.1") == 164 and zone_header_size("i386", "1.2") == 168
    expect = {8: 168, 16: 176, 32: 192, 64: 192, 128: 256, 256: 256, 512: 512, 1024: 1024,
              2048: 2048, 4096: 4096, 8192: 8192, 16384: 16384, 48: 168, 144: 168}
    for chunk, off in expect.items():
        assert first_offset(chunk, 164) == off == first_offset(chunk, 168)


@pytest.mark.parametrize("zs,chunk,nmax", [(131072, 8, 16363), (131072, 16384, 7), (32768, 16384, 1),
                                           (65536, 16384, 3), (32768, 8, 4075), (65536, 48, 1361),
                                           (131072, 2048, 63), (32768, 1024, 31)])
def test_nmax(zs, chunk, nmax):
    assert zone_nmax(zs, chunk, 164) == nmax


def test_classes_table_has_72_rows_in_zone_order():
    rows = kalloc.boot(physmem="64M").stats()["classes"]
    assert [r["size"] for r in rows] == CHUNK_SIZES
    assert rows[0]["objs_per_slab"] == zone_nmax(32768, 8, 168) and rows[0]["slab_bytes"] == 32768
    assert {"size", "objs_per_slab", "slab_bytes", "first_offset", "inuse", "free", "slabs"} <= set(rows[5])


def test_power_of_two_sizes_are_naturally_aligned():
    k, t = kalloc.boot(physmem="256M"), MallocType("tty")
    for size in (8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        for _ in range(40):
            assert k.malloc(size, t) % size == 0
    assert k.malloc(4000, t) % 4096 == 0 and k.malloc(15361, t) % 16384 == 0
    assert k.usable_size(k.malloc(15000, t)) == 15360   # not 16384 (the digest's example is off)
    assert k.malloc(4096, t) % 4096 == 0  # page multiples go to kmem: page aligned


def test_zone_found_by_masking_and_lifo_reuse():
    k, t = kalloc.boot(physmem="256M"), MallocType("x")
    a = k.malloc(100, t)
    zs = k.stats()["slab"]["zone_size"]
    base = a & ~(zs - 1)
    assert a == base + 168 and k.usable_size(a) == 104
    b = k.malloc(100, t)
    assert b == a + 104
    k.free(a, t)
    assert k.malloc(100, t) == a


def test_malloc_zero_returns_zero_length_ptr():
    k, t = kalloc.boot(), MallocType("ahc")
    p = k.malloc(0, t)
    assert p == 0xFFFFFFF8 and (t.calls, t.inuse, t.memuse) == (1, 0, 0)
    k.free(p, t)
    assert k.usable_size(p) == 0
    assert kalloc.boot(arch="amd64").malloc(0, MallocType("y")) == 0xFFFFFFFFFFFFFFF8


def test_free_null_panics_as_the_1_1_code_faults():
    with pytest.raises(kalloc.KernelPanic, match="NULL"):
        kalloc.boot().free(0, MallocType("x"))


def test_cross_cpu_free_is_one_ipi_and_the_owner_does_the_accounting():
    k, t = kalloc.boot(ncpus=2), MallocType("net")
    ptrs = [k.malloc(256, t, cpu=0) for _ in range(10)]
    for p in ptrs:
        k.free(p, t, cpu=1)
    st = k.stats()
    assert st["vm"]["ipis"] == 10 and st["counters"]["remote_frees"] == 10
    assert (t.inuse, t.memuse) == (0, 0)
    assert k.malloc(256, t, cpu=0) in ptrs       # back on cpu 0's zone


def test_passive_remote_free_sends_few_ipis():
    k, t = kalloc.boot(ncpus=2, remote_free="passive"), MallocType("net")
    for _ in range(20):
        ptrs = [k.malloc(256, t, cpu=0) for _ in range(50)]
        for p in ptrs:
            k.free(p, t, cpu=1)
    st = k.stats()
    assert st["counters"]["remote_frees"] == 1000 and st["counters"]["remote_cas"] == 1000
    assert st["vm"]["ipis"] < 10
    assert (t.inuse, t.memuse) == (0, 0)


def test_free_zones_cache_holds_two_then_releases():
    k, t = kalloc.boot(physmem="64M"), MallocType("x")
    nmax = zone_nmax(32768, 1024, 168)
    ptrs = [k.malloc(1000, t) for _ in range(nmax * 5)]
    zones = {p & ~32767 for p in ptrs}
    assert len(zones) == 5
    for p in ptrs:
        k.free(p, t)
    st = k.stats()["slab"]
    assert st["free_zones_per_cpu"] == [2]           # ZONE_RELS_THRESH
    assert st["kmem_slab_frees"] == 2                # 5 zones: 1 stays on ZoneAry, 2 cached, 2 released
    k2 = kalloc.boot(physmem="64M", zone_cache=32)
    ptrs = [k2.malloc(1000, t) for _ in range(nmax * 5)]
    for p in ptrs:
        k2.free(p, t)
    assert k2.stats()["slab"]["free_zones_per_cpu"] == [4]


def test_limit_null_for_nowait_and_nullok_panic_otherwise():
    k = kalloc.boot()
    t = MallocType("devbuf", limit=1000)
    k.malloc(1000, t)
    assert k.malloc(8, t, M_NOWAIT) is None and k.malloc(8, t, M_NULLOK) is None
    with pytest.raises(kalloc.KernelPanic, match="^devbuf: malloc limit exceeded$"):
        k.malloc(8, t, M_WAITOK)
    assert t.calls == 4


def test_default_limit_is_a_tenth_of_memory():
    k, t = kalloc.boot(physmem="64M"), MallocType("x")
    k.malloc(8, t)
    assert t.limit == (64 << 20) // 10
    k, t = kalloc.boot(physmem="4G"), MallocType("y")
    k.malloc(8, t)
    assert t.limit == 1066405888 // 10      # min(physmem, i386 KVA) / 10


def _dirty_reused_zone(**opts):
    k, t = kalloc.boot(physmem="64M", **opts), MallocType("x")
    nmax = zone_nmax(32768, 512, 168)
    ptrs = [k.malloc(512, t) for _ in range(nmax * 3)]   # 3 zones
    for p in ptrs:
        k.write(p, b"\xee" * 512)
    for p in ptrs:
        k.free(p, t)                                       # two go to FreeZones
    fresh = [k.malloc(1000, t, M_WAITOK | M_ZERO) for _ in range(40)]   # another size reuses them
    return any(k.read(p, 1000) != bytes(1000) for p in fresh)


def test_mzero_bug_only_with_the_option():
    assert not _dirty_reused_zone()
    assert _dirty_reused_zone(mzero_bug=True)
    with pytest.raises(kalloc.KernelPanic, match="M_ZERO memory is not zero"):
        _dirty_reused_zone(mzero_bug=True, invariants=True)


def test_realloc_same_chunk_same_pointer_and_bug_a_knob():
    k, t = kalloc.boot(), MallocType("x")
    a = k.malloc(100, t)
    assert k.realloc(a, 103, t) == a                 # both round to 104
    k.write(a, b"abc")
    b = k.realloc(a, 200, t)
    assert b != a and k.read(b, 3) == b"abc"
    c = k.realloc(b, 20000, t)
    assert k.usable_size(c) == 20480
    d = kalloc.boot(realloc_bug=True)
    e = d.malloc(100, t)
    with pytest.raises(kalloc.KernelPanic, match="Unexpected byte count 20000"):
        d.realloc(e, 20000, t)


def test_zone_limit_runtime_knob_avoids_the_32k_quirk():
    k, t = kalloc.boot(physmem="32M"), MallocType("x")
    k.malloc(16000, t)
    with pytest.raises(kalloc.KernelPanic, match="z_NFree > 0"):
        k.malloc(16000, t)
    k2 = kalloc.boot(physmem="32M", zone_limit="runtime")
    assert k2.stats()["slab"]["zone_limit"] == 8192
    a, b = k2.malloc(16000, t), k2.malloc(16000, t)
    assert k2.usable_size(a) == 16384 and a != b


def test_zones_take_low_memory_under_the_2003_08_policy():
    def lowest_zone_page(policy):
        k, t = kalloc.boot(physmem="64M", page_policy=policy), MallocType("x")
        p = k.malloc(64, t)
        return k.vtophys(p) >> 12
    assert lowest_zone_page("2003-08") < 1024          # below 4 MiB: taken from the low end
    assert lowest_zone_page("2003-09-14") > 15000      # the fix: high memory first


def test_invariants_poison_freed_chunks_with_deadc0de():
    k, t = kalloc.boot(ncpus=2, invariants=True), MallocType("x")
    a, b = k.malloc(100, t), k.malloc(20000, t)
    k.write(a, b"\x11" * 100)
    k.free(a, t, cpu=1)                      # a remote free: the owner poisons it
    k.free(b, t)
    assert k.read(a, 64) == bytes.fromhex("dec0adde") * 16 and k.read(a + 64, 36) == b"\x11" * 36
    plain = kalloc.boot()
    c = plain.malloc(100, t)
    plain.write(c, b"\x22" * 8)
    plain.free(c, t)
    assert plain.read(c, 8) == b"\x22" * 8     # without INVARIANTS freed memory is left alone
