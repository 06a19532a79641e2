"""``fs``: a file system's long-lived objects of many types, slow turnover, big buffers.

Imitates FreeBSD 4 / DragonFly 2003 file-system metadata: ``getnewvnode`` (struct vnode,
about 200 bytes on i386), ``ffs_vget``'s MALLOC(M_FFSNODE) of the in-core inode (about 250
bytes), ``cache_enter``'s name-cache entries (64 + the name, 64-128 bytes), directory
hash and softdep records, and now and then a cluster read buffer (16-64 KiB) that is freed
soon after.  The working set is large and long-lived: each CPU's file-system activity fills
a cache of objects, then replaces the oldest a few at a time (LRU-like recycling), so
memory is held for most of the run and fragmentation, not speed, is what differs.

Parameters: ``cache`` objects per CPU, ``turnover`` replacements per CPU, ``big_every``
replacements between large buffers, ``work_cycles`` per replacement.
"""

from collections import deque

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, malloc, work

KINDS = (("vnodes", 200, 200), ("FFS node", 250, 250), ("namecache", 64, 128),
         ("dirhash", 32, 96), ("softdep", 40, 160))


class Fs(Workload):
    NAME = "fs"
    DESCRIPTION = "file system: long-lived vnodes/inodes/namecache of many types, slow LRU turnover, big buffers"
    PARAMS = {"cache": 400, "turnover": 3000, "big_every": 50, "work_cycles": 800}

    def threads(self, ctx):
        return [(cpu, f"fs{cpu}", self.fs(ctx, cpu)) for cpu in range(ctx.ncpus)]

    def _object(self, rng):
        kind, lo, hi = rng.choice(KINDS)
        return malloc(rng.randint(lo, hi), kind, M_WAITOK)

    def fs(self, ctx, cpu):
        p = ctx.params
        rng = ctx.rng(f"fs{cpu}")
        lru = deque()
        for _ in range(p["cache"]):
            lru.append((yield self._object(rng)))
        for i in range(p["turnover"]):
            if lru:
                yield free(lru.popleft())
            lru.append((yield self._object(rng)))
            yield work(p["work_cycles"])
            if p["big_every"] and i % p["big_every"] == 0:
                buf = yield malloc(rng.choice((16384, 32768, 65536)), "cluster_read", M_WAITOK)
                yield work(p["work_cycles"] * 4)
                yield free(buf)
        while lru:
            yield free(lru.popleft())
