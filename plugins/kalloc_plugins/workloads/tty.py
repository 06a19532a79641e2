"""``tty``: terminal line discipline clists, one tty per CPU (a CPU-local workload).

Imitates FreeBSD 4 / DragonFly 2003 ``kern/tty_subr.c``: a tty's character queues are
lists of ``struct cblock`` (CBLOCK = 128 bytes: a next pointer and 124 characters),
allocated with malloc(M_TTYS) as input arrives and freed as the reader drains them.
cblock_alloc masks a character pointer with ~CROUND to find its cblock, so cblocks
must be 128-byte aligned: the power-of-two alignment that the slab allocator's
announcement promises "kern_tty.c depends heavily on".  clist_alloc_cblocks reserves
cblocks when a tty opens or its high-water mark changes; output goes through
power-of-two line buffers (ttymalloc-style 256..2048 bytes).

Each CPU runs one tty thread: it opens its tty, reserving ``reserve`` cblocks (held until
the close at the end), then bursts of cblocks arrive (a line of input or a paste),
characters are written into them, the reader drains them after a short time, and the
next burst comes.  Every object lives and dies on its own CPU.

Parameters: ``reserve`` cblocks per tty held for the run, ``bursts`` per tty,
``max_cblocks`` per burst (1 to it, at random; at least 1), ``line_buffer_every`` bursts
between line buffers (0: none), ``think_cycles`` (at least 1) between a burst and its
draining (1 to twice it, at random); each drained cblock, and each reserved cblock when
it is allocated and freed, costs ``think_cycles // 8``.

Calibration (docs/calibration.md, made by docs/calibration.py).  The traces have no tty
line-discipline family (only ``tty_open``'s 16 kmallocs a trace, no tty_buffer/n_tty), so
the whole ``exec`` trace (exec-heavy shell work, the closest to interactive use) is used:

* ``reserve`` = 2,350: the exec trace's mean live set is 4,702 objects on its 2 CPUs, 2,351
  a CPU; cblocks are 128 bytes, so that is ~300 KB a CPU against exec's 418 KB a CPU.
* ``think_cycles`` = 40,000: exec's mean gap between allocator events on one CPU while busy
  (gaps of at most 100 us) is 4,367 cycles at 2.0 GHz; with the defaults a tty does 14,900
  allocator operations and 1,612.5 x think_cycles of work (2 x 2,350 x 1/8 for the reserve,
  400 bursts x (1 + 12.5/8)), so think_cycles = 14,900 x 4,367 / 1,612.5 = 40,350, rounded.
* ``bursts`` = 400 keeps the 4-CPU run near 60,000 allocator operations (not calibrated);
  ``max_cblocks`` and ``line_buffer_every`` are kept from the 2003 model (not calibrated).

Warm-up (``warmup_ops``): every CPU's reserve plus 20 line buffers' worth of bursts
(20 x ``line_buffer_every`` bursts, at most half the bursts), so that each CPU has used each
of the four line-buffer sizes with probability 1 - 4 x (3/4)^20 > 99 %; counted as
ncpus x (reserve + n x (max_cblocks + 1 + 2 / line_buffer_every)) for n such bursts (the
mean number of operations of a burst).
"""

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, malloc, work, write

CBLOCK = 128


class Tty(Workload):
    NAME = "tty"
    DESCRIPTION = "tty clists: a reserve and bursts of 128-byte cblocks, power-of-two line buffers, CPU-local"
    PARAMS = {"reserve": 2350, "bursts": 400, "max_cblocks": 24, "line_buffer_every": 4, "think_cycles": 40000}
    LIMITS = {"max_cblocks": (1, None), "think_cycles": (1, None)}

    @staticmethod
    def warmup_ops(params, ncpus):
        every = params["line_buffer_every"]
        n = min(20 * max(every, 1), params["bursts"] // 2)
        per_burst = params["max_cblocks"] + 1 + (2 / every if every else 0)
        return ncpus * (params["reserve"] + int(n * per_burst))

    def threads(self, ctx):
        return [(cpu, f"tty{cpu}", self.tty(ctx, cpu)) for cpu in range(ctx.ncpus)]

    def tty(self, ctx, cpu):
        p = ctx.params
        rng = ctx.rng(f"tty{cpu}")
        per_block = p["think_cycles"] // 8
        reserved = []
        for _ in range(p["reserve"]):
            reserved.append((yield malloc(CBLOCK, "ttys", M_WAITOK)))
            yield work(per_block)
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
                yield work(per_block)
            if line is not None:
                yield free(line)
        for h in reserved:
            yield free(h)
            yield work(per_block)
