"""``prodcons``: producer/consumer pairs across CPUs (after xmalloc-test).

xmalloc-test (Wolfram Gloger's malloc stress test, kept in mimalloc-bench) runs producer
threads that allocate objects and hand them to consumer threads that free them, the
pattern of a driver whose interrupt path allocates and whose taskqueue frees.  Here CPU
2i produces for CPU 2i+1; an odd last CPU is its own consumer, and a single CPU does both.
Every free is remote except on a self-paired CPU.

Parameters: ``objects`` per producer, ``batch`` handed over at a time (at least 1),
``work_cycles`` per object on each side; sizes are drawn from a few small ones.

Calibration (docs/calibration.md, made by docs/calibration.py).  xmalloc-test is an
allocator benchmark from the literature; its structure is kept, and only what a trace can
tell is calibrated, from the whole ``exec`` trace (no trace has a producer/consumer driver
family; its objects freed on another CPU than their allocation, ``freed-remote``, are the
pattern prodcons makes):

* ``batch`` = 326: exec's ``freed-remote`` objects have a mean live set of 326 on its 2
  CPUs (their summed lifetimes over the trace's duration).  A pair holds about one batch
  in flight (half of the one being filled, half of the one being freed).
* ``work_cycles`` = 4,400: exec's mean busy gap between allocator events on one CPU,
  4,367 cycles at 2.0 GHz, rounded; each allocator operation is followed by that much work.
* ``objects`` = 15,000 keeps the 4-CPU run at 60,000 allocator operations (not
  calibrated); the sizes are the benchmark's, kept.

Warm-up (``warmup_ops``): the first two batches of every pair, allocated and freed:
npairs x 4 x batch operations (npairs = ceil(ncpus / 2)), at most half the run; the
in-flight set has reached its working size and the consumer's frees have come back.
"""

from kalloc.flags import M_WAITOK
from kalloc.workload import Workload, free, get, malloc, put, work

SIZES = (32, 64, 128, 256, 512)


class Prodcons(Workload):
    NAME = "prodcons"
    DESCRIPTION = "producer/consumer across CPU pairs: CPU 2i allocates, CPU 2i+1 frees (xmalloc-test)"
    PARAMS = {"objects": 15000, "batch": 326, "work_cycles": 4400}
    LIMITS = {"batch": (1, None)}

    @staticmethod
    def warmup_ops(params, ncpus):
        npairs = (ncpus + 1) // 2
        return npairs * min(4 * params["batch"], params["objects"])

    def threads(self, ctx):
        out = []
        for prod in range(0, ctx.ncpus, 2):
            cons = prod + 1 if prod + 1 < ctx.ncpus else prod
            q = ctx.queue(f"pair{prod}")
            out.append((prod, f"producer{prod}", self.producer(ctx, prod, q)))
            out.append((cons, f"consumer{cons}", self.consumer(ctx, q)))
        return out

    def producer(self, ctx, cpu, q):
        p = ctx.params
        rng = ctx.rng(f"producer{cpu}")
        batch = []
        for _ in range(p["objects"]):
            h = yield malloc(rng.choice(SIZES), "xmalloc", M_WAITOK)
            yield work(p["work_cycles"])
            batch.append(h)
            if len(batch) == p["batch"]:
                yield put(q, batch)
                batch = []
        if batch:
            yield put(q, batch)
        yield put(q, None)

    def consumer(self, ctx, q):
        while True:
            batch = yield get(q)
            if batch is None:
                return
            for h in batch:
                yield free(h)
                yield work(ctx.params["work_cycles"])
