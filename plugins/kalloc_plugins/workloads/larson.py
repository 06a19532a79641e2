"""``larson``: server-style objects handed between CPUs (after mimalloc-bench's larson).

Larson and Krishnan's server benchmark (ISMM 1998): each thread owns an array of slots
holding objects of random sizes; it repeatedly frees a random slot and allocates a new
object there, and from time to time the whole array passes to the next thread, which goes
on freeing objects another thread allocated -- a server whose requests migrate between
worker threads.  kalloc runs one worker per CPU; arrays pass round the ring of CPUs.

Parameters: ``slots`` per worker, ``rounds`` of replacements per epoch, ``epochs``
(hand-overs), ``min_size``/``max_size`` of the objects, ``work_cycles`` per replacement.
A worker needs at least one slot, and ``min_size`` must not be above ``max_size``.
"""

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, get, malloc, put, work


class Larson(Workload):
    NAME = "larson"
    DESCRIPTION = "larson server benchmark: random-size slots replaced, arrays handed round the CPUs"
    PARAMS = {"slots": 64, "rounds": 400, "epochs": 6, "min_size": 16, "max_size": 1024, "work_cycles": 300}
    LIMITS = {"slots": (1, None)}

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
