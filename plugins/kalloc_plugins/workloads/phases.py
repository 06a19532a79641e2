"""``phases``: one size class at a time, all allocated then all freed (a phase change).

McKusick and Karels (1988, "Design of a General Purpose Memory Allocator for the 4.3BSD
UNIX Kernel", share/doc/papers/kernmalloc) say of their power-of-two buckets that memory
once given to a bucket is never given back to the system: a page carved into 64-byte
chunks stays in the 64-byte bucket's free list for the life of the kernel, even when the
kernel's demand has moved on to another size.  FreeBSD 4.8's kmem_map keeps that rule
(kern_malloc.c: a bucket page goes back only in the "couldfree" case, which 4.8 counts
and never acts on; docs/research/kmem_map.md).  The DragonFly 2003 slab releases a zone
once it is wholly free, keeping only ``zone_cache`` (2) free zones per CPU and the last
zone of each size on ZoneAry (docs/research/slab.md section 3.5); requests that are page
multiples (4096 here) take their own pages, returned on free.

The workload is the smallest program that makes the difference visible: a sequence of
phases, each of one request size.  In a phase a CPU allocates ``objects`` chunks of that
size, then frees them all, in allocation order, before the next phase starts; there is
no live memory left between phases or at the end.  So what the allocator still holds
after the last free, ``memory.end_footprint_bytes`` - ``memory.boot_footprint_bytes``,
is memory it kept for sizes nobody asks for any more: on kmem_map about the sum over the
phases of ``objects`` x bucket size (each bucket's historical peak); on the slab a few
zones.

Sizes: ``first_size``, then multiplied by ``growth`` while not above ``last_size``
(defaults 64, 256, 1024, 4096 bytes).  Each phase of each CPU uses its own malloc type,
``phase<size>.cpu<n>``, so ``types[]`` shows the phases apart, and so that a type's limit
(min(RAM, KVA) / 10 on the slab: 6.4 MiB at 64 MiB) is not what ends a run of several
CPUs: 2 CPUs x 1,000 x 4096 bytes under one type would exceed it and panic.

Parameters: ``objects`` per phase per CPU (default 1,000), ``first_size`` (at least 1),
``last_size`` (at least ``first_size``), ``growth`` (at least 2), ``percpu``: every CPU
runs its own phases on its own objects (true, the default), or CPU 0 alone (false; the
other CPUs stay idle), ``work_cycles`` after each allocator operation (default 1,000).
Every free is on the CPU that allocated: the workload is about footprint, not about
cross-CPU frees.  Not calibrated from a trace: it is a model of a phase change, not of a
driver.

Warm-up (``warmup_ops``): none (0): the point is what happens from boot to the end.
"""

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, malloc, work


def phase_sizes(params) -> list:
    """The request size of each phase, in order."""
    sizes, s = [], params["first_size"]
    while s <= params["last_size"]:
        sizes.append(s)
        s *= params["growth"]
    return sizes


class Phases(Workload):
    NAME = "phases"
    DESCRIPTION = "phase changes: one size class at a time, all allocated then all freed (bucket memory is kept)"
    PARAMS = {"objects": 1000, "first_size": 64, "last_size": 4096, "growth": 4, "percpu": True,
              "work_cycles": 1000}
    LIMITS = {"first_size": (1, None), "last_size": (1, None), "growth": (2, None)}

    @staticmethod
    def check_params(params):
        if params["first_size"] > params["last_size"]:
            raise ValueError("first_size must not be above last_size")

    @staticmethod
    def warmup_ops(params, ncpus):
        return 0

    def threads(self, ctx):
        cpus = range(ctx.ncpus) if ctx.params["percpu"] else range(1)
        return [(cpu, f"phases{cpu}", self.phases(ctx, cpu)) for cpu in cpus]

    def phases(self, ctx, cpu):
        p = ctx.params
        for size in phase_sizes(p):
            tname = f"phase{size}.cpu{cpu}"
            live = []
            for _ in range(p["objects"]):
                live.append((yield malloc(size, tname, M_WAITOK)))
                yield work(p["work_cycles"])
            for h in live:
                yield free(h)
                yield work(p["work_cycles"])
            ctx.count("phases")
