"""``tty``: terminal line discipline clists, one tty per CPU (a CPU-local workload).

Imitates FreeBSD 4 / DragonFly 2003 ``kern/tty_subr.c``: a tty's character queues are
lists of ``struct cblock`` (CBLOCK = 128 bytes: a next pointer and 124 characters),
allocated with malloc(M_TTYS) as input arrives and freed as the reader drains them.
cblock_alloc masks a character pointer with ~CROUND to find its cblock, so cblocks
must be 128-byte aligned: the power-of-two alignment that the slab allocator's
announcement promises "kern_tty.c depends heavily on".  clist_alloc_cblocks reserves
bursts of cblocks when a tty opens or its high-water mark changes; output goes through
power-of-two line buffers (ttymalloc-style 256..2048 bytes).

Each CPU runs one tty thread: a burst of cblocks arrives (a line of input or a paste),
characters are written into them, the reader drains them after a short time, and the
next burst comes.  Every object lives and dies on its own CPU.

Parameters: ``bursts`` per tty, ``max_cblocks`` per burst (1 to it, at random; at least 1),
``line_buffer_every`` bursts between line buffers (0: none), ``think_cycles`` (at least 1)
between a burst and its draining (1 to twice it, at random).
"""

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, malloc, work, write

CBLOCK = 128


class Tty(Workload):
    NAME = "tty"
    DESCRIPTION = "tty clists: bursts of 128-byte cblocks and power-of-two line buffers, CPU-local"
    PARAMS = {"bursts": 500, "max_cblocks": 24, "line_buffer_every": 4, "think_cycles": 400}
    LIMITS = {"max_cblocks": (1, None), "think_cycles": (1, None)}

    def threads(self, ctx):
        return [(cpu, f"tty{cpu}", self.tty(ctx, cpu)) for cpu in range(ctx.ncpus)]

    def tty(self, ctx, cpu):
        p = ctx.params
        rng = ctx.rng(f"tty{cpu}")
        for burst in range(p["bursts"]):
            blocks = []
            for _ in range(rng.randint(1, p["max_cblocks"])):
                h = yield malloc(CBLOCK, "ttys", M_WAITOK)
                yield write(h, b"x" * 8)
                blocks.append(h)
            line = None
            if p["line_buffer_every"] and burst % p["line_buffer_every"] == 0:
                line = yield malloc(256 << rng.randint(0, 3), "ttybuf", M_WAITOK)
            yield work(rng.randint(1, 2 * p["think_cycles"]))
            for h in blocks:
                yield free(h)
                yield work(p["think_cycles"] // 8)
            if line is not None:
                yield free(line)
