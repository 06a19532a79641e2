"""``larson``: server-style objects handed between CPUs (after mimalloc-bench's larson).

Larson and Krishnan's server benchmark (ISMM 1998): each thread owns an array of slots
holding objects of random sizes; it repeatedly frees a random slot and allocates a new
object there, and from time to time the whole array passes to the next thread, which goes
on freeing objects another thread allocated -- a server whose requests migrate between
worker threads.  kalloc runs one worker per CPU; arrays pass round the ring of CPUs.

Parameters: ``slots`` per worker, ``rounds`` of replacements per epoch, ``epochs``
(hand-overs), ``min_size``/``max_size`` of the objects, ``work_cycles`` per replacement.
A worker needs at least one slot, and ``min_size`` must not be above ``max_size``.

Calibration (docs/calibration.md, made by docs/calibration.py).  Larson is an allocator
benchmark from the literature; its structure (uniform random sizes, random replacement,
hand-over round the ring) is kept, and only what a trace can tell is calibrated, from the
whole ``exec`` trace (no trace has a server family):

* ``slots`` = 2,350: exec's mean live set, 4,702 objects on 2 CPUs, 2,351 a CPU.
* ``work_cycles`` = 8,700: exec's mean busy gap between allocator events on one CPU is
  4,367 cycles at 2.0 GHz, and a replacement is 2 operations: 2 x 4,367 = 8,734, rounded.
  The initial fill and the final release do no work, as in the benchmark.
* ``rounds`` = 800 keeps the 4-CPU run near 57,000 allocator operations (not calibrated);
  ``epochs``, ``min_size`` and ``max_size`` are the benchmark's, kept.

Warm-up (``warmup_ops``): every worker's fill and first epoch, ncpus x (slots + 2 x
rounds): each CPU has allocated its array and has replaced objects in it before the first
hand-over, so its zones for the sizes drawn exist.
"""

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, get, malloc, put, work


class Larson(Workload):
    NAME = "larson"
    DESCRIPTION = "larson server benchmark: random-size slots replaced, arrays handed round the CPUs"
    PARAMS = {"slots": 2350, "rounds": 800, "epochs": 6, "min_size": 16, "max_size": 1024, "work_cycles": 8700}
    LIMITS = {"slots": (1, None)}

    @staticmethod
    def warmup_ops(params, ncpus):
        return ncpus * (params["slots"] + 2 * params["rounds"])

    @staticmethod
    def check_params(p):
        if p["min_size"] > p["max_size"]:
            raise ValueError(f"min_size ({p['min_size']}) must not be above max_size ({p['max_size']})")

    def threads(self, ctx):
        return [(cpu, f"worker{cpu}", self.worker(ctx, cpu)) for cpu in range(ctx.ncpus)]

    def worker(self, ctx, cpu):
        p = ctx.params
        rng = ctx.rng(f"worker{cpu}")
        lo, hi = p["min_size"], p["max_size"]
        slots = []
        for _ in range(p["slots"]):
            slots.append((yield malloc(rng.randint(lo, hi), "larson", M_WAITOK)))
        nxt = ctx.queue((cpu + 1) % ctx.ncpus)
        mine = ctx.queue(cpu)
        for epoch in range(p["epochs"]):
            for _ in range(p["rounds"]):
                i = rng.randrange(len(slots))
                yield free(slots[i])
                slots[i] = yield malloc(rng.randint(lo, hi), "larson", M_WAITOK)
                yield work(p["work_cycles"])
            if ctx.ncpus > 1:
                yield put(nxt, slots)
                slots = yield get(mine)
        for h in slots:
            yield free(h)
