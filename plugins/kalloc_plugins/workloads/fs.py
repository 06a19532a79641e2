"""``fs``: a file system's long-lived objects of many types, slow turnover, big buffers.

Imitates FreeBSD 4 / DragonFly 2003 file-system metadata: ``getnewvnode`` (struct vnode,
about 200 bytes on i386), ``ffs_vget``'s MALLOC(M_FFSNODE) of the in-core inode (about 250
bytes), ``cache_enter``'s name-cache entries (64 + the name, 64-128 bytes), directory
hash and softdep records, and now and then a cluster read buffer (16-64 KiB) that is freed
soon after.  The working set is large and long-lived: each CPU's file-system activity fills
a cache of objects, then replaces the oldest a few at a time (LRU-like recycling), so
memory is held for most of the run and fragmentation, not speed, is what differs.

Parameters: ``cache`` objects per CPU, ``turnover`` replacements per CPU, ``big_every``
replacements between large buffers, ``work_cycles`` per replacement (four times that while a
large buffer is held; half of it for each object of the cache fill and of the final release),
``caches``: 1 (the default) takes vnodes and in-core inodes from object caches (kalloc.cache),
as getnewvnode's ``vnode_zone`` did in FreeBSD 4 and the "FFS inode" UMA zone (Linux's inode
caches) since; 0 mallocs them as before.  Name-cache entries stay mallocs: their size is the
name's (4.x's ``MALLOC(ncp, ..., sizeof *ncp + cnp->cn_namelen, M_VFSCACHE)``), which no
object cache of one size serves.

Calibration (docs/calibration.md, made by docs/calibration.py), from the ``fs`` trace
(file-system work) and its ``fs-metadata`` family (dentry, the inode caches, ext4's caches and
kmallocs, extent_status, buffer_head, radix_tree_node: what vnodes, FFS nodes, the name
cache, dirhash and softdep records were in 2003):

* ``cache`` = 3,500: the family's mean live set is 6,933 objects on the trace's 2 CPUs,
  3,466 a CPU (2.1 MB in all; kalloc's 2003 object sizes, 32-250 bytes, make a smaller
  cache in bytes than Linux 6.18's, whose mean live fs-metadata object is 306 bytes).
* ``work_cycles`` = 14,000: the fs trace's mean busy gap between allocator events on one
  CPU (gaps of at most 100 us) is 7,446 cycles at 2.0 GHz; a replacement makes
  2 + 2/big_every = 2.04 operations for 1 + 4/big_every = 1.08 x work_cycles of work, so
  work_cycles = 2.04 x 7,446 / 1.08 = 14,065, rounded (the fill's and release's half
  work_cycles, 7,000 an operation, match the same gap).
* ``turnover`` = 3,000 (as before) keeps the 4-CPU run near 52,000 allocator operations
  (not calibrated).  ``big_every`` is kept and not calibrated: the traces have no
  allocation above 5,840 bytes (Linux reads file data into page-cache pages, which the kmem
  tracepoints do not show).

Warm-up (``warmup_ops``): every CPU's cache fill plus its first ``big_every`` replacements
(two large buffers): ncpus x (cache + 2 x big_every + 4), so that all the size classes the
cache and the large buffers use exist.
"""

from collections import deque

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, cache_alloc, free, malloc, work

KINDS = (("vnodes", 200, 200), ("FFS node", 250, 250), ("namecache", 64, 128),
         ("dirhash", 32, 96), ("softdep", 40, 160))
CACHED = frozenset(("vnodes", "FFS node"))      # the kinds of one size that caches serve


class Fs(Workload):
    NAME = "fs"
    DESCRIPTION = "file system: long-lived vnodes/inodes/namecache of many types, slow LRU turnover, big buffers"
    PARAMS = {"cache": 3500, "turnover": 3000, "big_every": 50, "work_cycles": 14000, "caches": 1}
    LIMITS = {"caches": (0, 1)}

    @staticmethod
    def warmup_ops(params, ncpus):
        return ncpus * (params["cache"] + 2 * params["big_every"] + 4)

    def threads(self, ctx):
        return [(cpu, f"fs{cpu}", self.fs(ctx, cpu)) for cpu in range(ctx.ncpus)]

    def _object(self, rng, caches: int):
        kind, lo, hi = rng.choice(KINDS)
        size = rng.randint(lo, hi)
        return cache_alloc(kind, size, M_WAITOK) if caches and kind in CACHED else malloc(size, kind, M_WAITOK)

    def fs(self, ctx, cpu):
        p = ctx.params
        rng = ctx.rng(f"fs{cpu}")
        lru = deque()
        for _ in range(p["cache"]):
            lru.append((yield self._object(rng, p["caches"])))
            yield work(p["work_cycles"] // 2)
        for i in range(p["turnover"]):
            if lru:
                yield free(lru.popleft())
            lru.append((yield self._object(rng, p["caches"])))
            yield work(p["work_cycles"])
            if p["big_every"] and i % p["big_every"] == 0:
                buf = yield malloc(rng.choice((16384, 32768, 65536)), "cluster_read", M_WAITOK)
                yield work(p["work_cycles"] * 4)
                yield free(buf)
        while lru:
            yield free(lru.popleft())
            yield work(p["work_cycles"] // 2)
