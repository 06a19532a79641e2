"""kalloc's sizing functions against numbers computed by the real kernel C code.

tests/reference/kernel_sizing.json holds the results of small C harnesses (compiled with gcc,
i386 integer widths) into which the original lines were pasted: DragonFly kern_slaballoc.c
1.1/1.2 (+ the 1.7 ZoneLimit) and FreeBSD RELENG_4 kern_malloc.c / malloc.h / subr_param.c /
uipc_mbuf.c / machdep.c / vm_zone.c; its "_source" field names the files and commits.  No gcc
is needed here.  The kmeminit rows include 4.8's 32-bit wraps: exactly 4 GiB of RAM, and
tunables near 4 GiB.
"""

import json
from pathlib import Path

import pytest

import kalloc
from kalloc import vm_zone as vz
from kalloc.backends import kmem_map as K
from kalloc.backends import slab as S
from kalloc.errors import KernelPanic
from kalloc.machine import ARCHES

REF = json.loads((Path(__file__).parent / "reference" / "kernel_sizing.json").read_text())
SLAB, KMEM, ZONE = REF["slab"], REF["kmem_map"], REF["vm_zone"]
KVA = ARCHES["i386"].kva_size
MIB = 1 << 20
U32 = 1 << 32


def test_source_is_recorded():
    src = REF["_source"]
    for needle in ("a108bf718c", "6ab8e1dab9", "c7158d945f", "46a3f46dae", "984263bcb8", "kern_malloc.c 1.64.2.5"):
        assert needle in src


# --- slab (DragonFly kern_slaballoc.c 1.1/1.2, 2003) ------------------------------------------
def test_kva_bounds_of_i386():
    assert SLAB["kva_i386"] == [ARCHES["i386"].kva_min, ARCHES["i386"].kva_max, KVA]


@pytest.mark.parametrize("key", ["i386/1.1", "i386/1.2", "amd64/1.1", "amd64/1.2"])
def test_zone_header_size(key):
    arch, version = key.split("/")
    assert S.zone_header_size(arch, version) == SLAB["header_size"][key]


def test_zoneindex_every_size():
    bad = []
    for lo, hi, *want in SLAB["zoneindex_runs"]["rows"]:
        for n in range(lo, hi + 1):
            try:
                got = list(S.zoneindex(n))
            except KernelPanic:
                got = ["panic"]
            if got != want:
                bad.append((n, want, got))
    assert not bad, bad[:10]


def test_chunk_sizes_and_bands_follow_from_zoneindex():
    rows = [r for r in SLAB["zoneindex_runs"]["rows"] if r[2] != "panic" and r[0] > 0]
    assert S.CHUNK_SIZES == sorted({r[3] for r in rows})
    assert S.NZONES == max(r[2] for r in rows) + 1 == 72
    first_panic = next(r[0] for r in SLAB["zoneindex_runs"]["rows"] if r[2] == "panic")
    assert first_panic == S.ZALLOC_ZONE_LIMIT == S.BANDS[-1][0]


def test_zone_size_and_zone_limit_every_mib():
    bad = []
    for lo, hi, zs, zl in SLAB["zone_size_runs_mib"]["rows"]:
        for mib in range(lo, hi + 1):
            got = S.zone_size(mib * MIB, KVA)
            if (got, S.zone_limit(got, "runtime"), S.zone_limit(got)) != (zs, zl, S.ZALLOC_ZONE_LIMIT):
                bad.append((mib, zs, zl, got))
    assert not bad, bad[:10]


def test_zone_size_at_page_granularity_around_the_thresholds():
    for pages, zs, zl, ks in SLAB["zone_size_pages"]["rows"]:
        usable = pages * S.PAGE_SIZE
        got = S.zone_size(usable, KVA)
        assert (got, S.zone_limit(got, "runtime"), S.type_limit(usable, KVA)) == (zs, zl, ks), pages


def test_type_limit():
    bad = [(mib, ks, S.type_limit(mib * MIB, KVA)) for mib, ks in SLAB["ks_limit_mib"]["rows"]
           if S.type_limit(mib * MIB, KVA) != ks]
    assert not bad, bad[:10]


@pytest.mark.parametrize("key", sorted(SLAB["geometry"]["rows"]))
def test_first_offset_and_nmax(key):
    header, zone_size = map(int, key.split("/"))
    rows = SLAB["geometry"]["rows"][key]
    assert [r[0] for r in rows] == S.CHUNK_SIZES
    got = [[c, S.first_offset(c, header), S.zone_nmax(zone_size, c, header)] for c, _, _ in rows]
    assert got == rows


# --- kmem_map (FreeBSD 4.8 kern_malloc.c) -----------------------------------------------------
def test_bucketindx():
    bad = [(s, want, K.bucketindx(s)) for lo, hi, want in KMEM["bucketindx_runs"]["rows"]
           for s in range(lo, hi + 1) if K.bucketindx(s) != want]
    bad += [(s, want, K.bucketindx(s)) for s, want in KMEM["bucketindx_points"]["rows"]
            if K.bucketindx(s) != want]
    assert not bad, bad[:10]


def test_elmpercl_and_highwat():
    assert len(KMEM["elmpercl"]["rows"]) == K.NBUCKETS
    for indx, epc, highwat in KMEM["elmpercl"]["rows"]:
        b = K.Bucket(indx)
        assert (K.elmpercl(indx), b.elmpercl, b.highwat) == (epc, epc, highwat), indx


def test_refill_sizes():
    """malloc's refill: allocsize (bucket or page-rounded), pages, chunks carved (= kb_elmpercl)."""
    for lo, hi, allocsize, npg, carved in KMEM["refill_runs"]["rows"]:
        for s in (lo, hi):
            b = K.Bucket(K.bucketindx(s))
            if b.large:       # whole pages, no chunks
                got = (s > K.MAXALLOCSAVE, (s + K.PAGE_MASK) & ~K.PAGE_MASK, allocsize // K.PAGE_SIZE, 0)
            else:
                got = (s > K.MAXALLOCSAVE, b.size, -(-b.size // K.PAGE_SIZE), b.elmpercl)
            assert got == (s > K.MAXALLOCSAVE, allocsize, npg, carved), s


def _kmeminit_python(row):
    mib, users, tun = row[:3]
    r = K.kmem_map_size(mib * MIB, max(tun, 0), users)
    return [mib, users, tun, r.vm_kmem_size, r.maxusers, r.nmbclusters, r.nmbufs, r.mb_map_size, r.npg,
            K.type_limit(r.vm_kmem_size)]


def test_kmeminit_sizes():
    """Every row, the 32-bit wraps included: cnt.v_page_count * PAGE_SIZE (u_int) at 4 GiB,
    and npg's u_long sum with a kern.vm.kmem.size tunable near 4 GiB."""
    rows = KMEM["kmeminit"]["rows"]
    assert len(rows) > 300
    assert any(r[0] * MIB >= U32 for r in rows)
    assert any(r[6] * K.MSIZE + r[5] * K.MCLBYTES + r[3] >= U32 for r in rows)
    bad = [(r, _kmeminit_python(r)) for r in rows if _kmeminit_python(r) != r]
    assert not bad, bad[:5]


# --- vm_zone (FreeBSD 4.8 vm_zone.c 1.30.2.6) --------------------------------------------------
def test_zinit_sizing_and_first_refill():
    k = kalloc.boot("kmem_map", physmem="256M")
    bad = []
    for i, (size, nent, zalloc, *want) in enumerate(ZONE["zinit"]["rows"]):
        if i and i % 150 == 0:
            k = kalloc.boot("kmem_map", physmem="256M")     # room in kernel_map for the KVA reservations
        zl = vz.zone_list(k)
        kva_before = zl.kmem_kvaspace
        z = vz.zinit(k, "ref", size, nent, vz.ZONE_INTERRUPT if nent else 0, zalloc)
        kva = zl.kmem_kvaspace - kva_before
        vz.zalloc(z)
        got = [z.zsize, z.zfreemin, z.zalloc, z.zmax, z.zpagemax if nent else 0, z.zallocflag, z.ztotal, kva]
        if got != want:
            bad.append((size, nent, zalloc, want, got))
    assert not bad, bad[:5]
