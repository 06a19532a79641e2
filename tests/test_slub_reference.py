"""The slub backend against the real kernel: the 2-CPU Linux 6.18.44 machine whose series
recorded tests/traces/, and whose /proc/slabinfo and /sys/kernel/slab are in
tests/reference/slub_6.18.json (tests/reference/make_slub_snapshot.py took it).

Three checks, each computed by the kernel's rules in kalloc.backends.slub, nothing tabulated:

* every ``kmalloc`` event of the three bundled traces: ksize() of the same request with the
  same GFP flags (which choose the kmalloc kind) is the trace's ``bytes_alloc``;
* every ``kmem_cache_alloc`` event: the cache created as the 6.18 source creates it
  (``KERNEL_CACHES`` below: the flags and kmem_cache_args of its kmem_cache_create call)
  with the trace's ``bytes_req`` (the tracepoint prints ``s->object_size``) has the trace's
  ``bytes_alloc`` (``s->size``) as its slab_size;
* every cache of the snapshot that is no alias: created with its object_size, align and
  the flags sysfs shows, it has the snapshot's slab_size, objs_per_slab, order,
  cpu_partial and min_partial.
"""

from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import pytest

import kalloc
from kalloc.backends import slub as S
from kalloc_compat.linux import gfp_value

HERE = Path(__file__).parent
TRACES = sorted((HERE / "traces").glob("*.perf.txt.xz"))
SNAPSHOT = json.loads((HERE / "reference" / "slub_6.18.json").read_text())

_KMALLOC = re.compile(r" kmem:kmalloc: .* bytes_req=(\d+) bytes_alloc=(\d+) gfp_flags=(\S+)")
_CACHE = re.compile(r" kmem:kmem_cache_alloc: .* name=(\S+) bytes_req=(\d+) bytes_alloc=(\d+)")

H, P, RA, A, RCU = (S.SLAB_HWCACHE_ALIGN, S.SLAB_PANIC, S.SLAB_RECLAIM_ACCOUNT, S.SLAB_ACCOUNT,
                    S.SLAB_TYPESAFE_BY_RCU)
# The kmem_cache_create call of each cache the traces allocate from, in v6.18: (file and
# function, flags, align, whether it has a ctor, kmem_cache_args.freeptr_offset used,
# sheaf_capacity).  KMEM_CACHE(s, f) passes __alignof__(struct s): 8 but for pool_workqueue
# (__aligned(1 << WORK_STRUCT_PWQ_SHIFT)).  Geometry does not depend on SLAB_PANIC or
# SLAB_ACCOUNT; they are here because the source has them.
KERNEL_CACHES = {
    "anon_vma": ("mm/rmap.c anon_vma_init", RCU | P | A, 0, True, False, 0),
    "anon_vma_chain": ("mm/rmap.c anon_vma_init: KMEM_CACHE", P | A, 8, False, False, 0),
    "bio-120": ("block/bio.c create_bio_slab", H | RCU, 8, False, False, 0),
    "bio-184": ("block/bio.c create_bio_slab", H | RCU, 8, False, False, 0),
    "biovec-128": ("block/bio.c init_bio", H | P, 0, False, False, 0),
    "biovec-max": ("block/bio.c init_bio", H | P, 0, False, False, 0),
    "buffer_head": ("fs/buffer.c buffer_init: KMEM_CACHE", RA | P, 8, False, False, 0),
    "dentry": ("fs/dcache.c dcache_init", RA | P | A, 8, False, False, 0),
    "ext4_allocation_context": ("fs/ext4/mballoc.c ext4_init_mballoc: KMEM_CACHE", RA, 8, False, False, 0),
    "ext4_inode_cache": ("fs/ext4/super.c init_inodecache", RA | A, 0, True, False, 0),
    "ext4_io_end": ("fs/ext4/page-io.c ext4_init_pageio: KMEM_CACHE", RA, 8, False, False, 0),
    "ext4_prealloc_space": ("fs/ext4/mballoc.c ext4_init_mballoc: KMEM_CACHE", RA, 8, False, False, 0),
    "extent_status": ("fs/ext4/extents_status.c ext4_init_es: KMEM_CACHE", RA, 8, False, False, 0),
    "files_cache": ("kernel/fork.c proc_caches_init", H | P | A, 0, False, False, 0),
    "filp": ("fs/file_table.c files_init", H | P | A | RCU, 0, False, True, 0),
    "ftrace_event_field": ("kernel/trace/trace_events.c event_trace_enable: KMEM_CACHE", P, 8, False, False, 0),
    "inode_cache": ("fs/inode.c inode_init", RA | P | A, 0, True, False, 0),
    "iommu_iova_magazine": ("drivers/iommu/iova.c iova_cache_get", H, 0, False, False, 0),
    "key_jar": ("security/keys/key.c key_init", H | P, 0, False, False, 0),
    "lsm_file_cache": ("security/security.c security_init", P, 0, False, False, 0),
    "lsm_inode_cache": ("security/security.c security_init", P, 0, False, False, 0),
    "maple_node": ("lib/maple_tree.c maple_tree_init (args.align = sizeof(struct maple_node))", P, 256, False,
                   False, 32),
    "mm_struct": ("kernel/fork.c mm_cache_init (ARCH_MIN_MMSTRUCT_ALIGN 0)", H | P | A, 0, False, False, 0),
    "names_cache": ("fs/dcache.c vfs_caches_init", H | P, 0, False, False, 0),
    "pid": ("kernel/pid.c pid_idr_init (__alignof__(struct pid))", H | P | A, 8, False, False, 0),
    "pool_workqueue": ("kernel/workqueue.c workqueue_init_early: KMEM_CACHE", P, 256, False, False, 0),
    "proc_inode_cache": ("fs/proc/inode.c proc_init_kmemcache", RA | A | P, 0, True, False, 0),
    "radix_tree_node": ("lib/radix-tree.c radix_tree_init", P | RA, 0, True, False, 0),
    "seq_file": ("fs/seq_file.c seq_file_init: KMEM_CACHE", A | P, 8, False, False, 0),
    "sighand_cache": ("kernel/fork.c proc_caches_init", H | P | RCU | A, 0, True, False, 0),
    "signal_cache": ("kernel/fork.c proc_caches_init", H | P | A, 0, False, False, 0),
    "sigqueue": ("kernel/signal.c signals_init: KMEM_CACHE", P | A, 8, False, False, 0),
    "task_struct": ("kernel/fork.c fork_init (align L1_CACHE_BYTES)", P | A, 64, False, False, 0),
    "vm_area_struct": ("mm/vma_init.c vma_state_init", H | P | RCU | A, 0, False, True, 32),
    "vmap_area": ("mm/vmalloc.c vmalloc_init: KMEM_CACHE", P, 8, False, False, 0),
}
NCPUS = SNAPSHOT["present_cpus"]


@pytest.fixture(scope="module")
def events():
    """(kmalloc events as (bytes_req, bytes_alloc, gfp text), cache events as (name,
    bytes_req, bytes_alloc)) of every bundled trace, read once."""
    km, kc = [], []
    for path in TRACES:
        with lzma.open(path, "rt") as fh:
            for line in fh:
                if " kmem:kmalloc: " in line:
                    m = _KMALLOC.search(line)
                    km.append((int(m[1]), int(m[2]), m[3]))
                elif " kmem:kmem_cache_alloc: " in line:
                    m = _CACHE.search(line)
                    kc.append((m[1], int(m[2]), int(m[3])))
    assert len(TRACES) == 3 and len(km) > 20_000 and len(kc) > 130_000
    return km, kc


def test_snapshot_is_the_traces_machine():
    assert SNAPSHOT["uname_r"].startswith("6.18.") and NCPUS == 2 and SNAPSHOT["page_size"] == S.PAGE_SIZE
    assert "slub_" not in SNAPSHOT["cmdline"] and "slab_" not in SNAPSHOT["cmdline"]


def test_every_kmalloc_event_gets_its_bytes_alloc(events):
    k = kalloc.boot("slub", ncpus=NCPUS)
    be, t = k.backend, k.malloc_type("trace")
    got = {}
    for req, _, gfp in {(r, 0, g) for r, _, g in events[0]}:
        bits = gfp_value(gfp)
        va = be.malloc_gfp(req, t, bits)
        got[req, gfp] = (k.usable_size(va), be.page_slab[va >> S.PAGE_SHIFT].cache.name)
        k.free(va, t)
    wrong = [(r, a, g, got[r, g]) for r, a, g in events[0] if got[r, g][0] != a]
    assert not wrong, wrong[:5]
    # the GFP bits chose the kinds the kernel has: kmalloc-cg for __GFP_ACCOUNT, -rcl for reclaimable
    names = {name for _, name in got.values()}
    assert {"kmalloc-cg-16", "kmalloc-rcl-96", "kmalloc-4k"} <= names, names


def test_every_kmem_cache_alloc_event_gets_its_bytes_alloc(events):
    seen = {(n, r, a) for n, r, a in events[1]}
    assert {n for n, _, _ in seen} == set(KERNEL_CACHES)
    for name, req, alloc in sorted(seen):
        _, flags, align, ctor, freeptr, sheaf = KERNEL_CACHES[name]
        g = S.calculate_sizes(req, align, flags, ctor, 0 if freeptr else None, NCPUS, sheaf_capacity=sheaf)
        assert g.size == alloc, (name, req, g.size, alloc)


def test_freeptr_offset_is_what_keeps_vm_area_struct_at_192():
    """The check can fail: without 6.18's use_freeptr_offset an RCU cache's free pointer
    goes after the object, and vm_area_struct's 192 bytes would take 256."""
    assert S.calculate_sizes(192, 0, H | RCU, False, None, NCPUS).size == 256
    assert S.calculate_sizes(192, 0, H | RCU, False, 0, NCPUS).size == 192


_SYSFS_FLAGS = (("hwcache_align", S.SLAB_HWCACHE_ALIGN), ("reclaim_account", S.SLAB_RECLAIM_ACCOUNT),
                ("cache_dma", S.SLAB_CACHE_DMA), ("destroy_by_rcu", S.SLAB_TYPESAFE_BY_RCU),
                ("poison", S.SLAB_POISON), ("red_zone", S.SLAB_RED_ZONE), ("store_user", S.SLAB_STORE_USER))
# Caches whose free pointer sits inside the object (kmem_cache_args.use_freeptr_offset in
# 6.18): sysfs does not show it, the source does (KERNEL_CACHES; bfilp is filp's sibling).
_FREEPTR = {"filp", "bfilp", "vm_area_struct"}


def test_geometry_of_every_cache_in_the_snapshot():
    checked = 0
    for name, r in SNAPSHOT["caches"].items():
        if "alias_of" in r:                      # a symlink to the merged cache, checked there
            continue
        flags = S.SLAB_KMALLOC if re.match(r"(dma-)?kmalloc-", name) else 0
        for attr, bit in _SYSFS_FLAGS:
            if r.get(attr):
                flags |= bit
        g = S.calculate_sizes(r["object_size"], r["align"], flags, bool(r.get("ctor")),
                              0 if name in _FREEPTR else None, NCPUS, sheaf_capacity=r.get("sheaf_capacity", 0))
        assert (g.size, g.objects, g.order, g.cpu_partial, g.min_partial) == (
            r["slab_size"], r["objs_per_slab"], r["order"], r["cpu_partial"], r["min_partial"]), name
        checked += 1
    assert checked > 200


def test_kmalloc_caches_booted_match_the_snapshot():
    """The caches slub boots with (create_kmalloc_caches) are the snapshot's, field by field."""
    be = kalloc.boot("slub", ncpus=NCPUS).backend
    snap = SNAPSHOT["caches"]
    rows = [be.kmem_cache_row(s) for kind in be.kmalloc_caches for s in kind if s is not None]
    assert len(rows) == 4 * 13
    for row in rows:
        r = snap[row["name"]]
        assert {k: row[k] for k in ("object_size", "slab_size", "objs_per_slab", "order", "cpu_partial",
                                    "min_partial")} == {k: r[k] for k in ("object_size", "slab_size",
                                                                          "objs_per_slab", "order",
                                                                          "cpu_partial", "min_partial")}, row


def test_slabinfo_lists_the_kmalloc_caches_as_the_kernel_does():
    """create_kmalloc_caches makes 96 and 192 before the powers of two, kind after kind;
    /proc/slabinfo prints the newest first, in slabinfo_show's columns."""
    text = kalloc.boot("slub", ncpus=NCPUS).backend.slabinfo()
    ours = [line.split()[0] for line in text.splitlines()[2:]]
    real = [line.split()[0] for line in SNAPSHOT["slabinfo"].splitlines()[2:]
            if re.match(r"(dma-)?kmalloc-", line)]
    assert ours == real
    assert text.splitlines()[:2] == SNAPSHOT["slabinfo"].splitlines()[:2]
    row = next(line for line in text.splitlines() if line.startswith("kmalloc-192 "))
    real_row = next(line for line in SNAPSHOT["slabinfo"].splitlines() if line.startswith("kmalloc-192 "))
    assert len(row) == len(real_row) and row.split()[3:6] == real_row.split()[3:6]
