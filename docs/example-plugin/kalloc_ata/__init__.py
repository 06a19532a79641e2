"""``ata``: an ATA disk driver's request path, as a third-party kalloc workload.

Imitates FreeBSD 4's ata(4) (dev/ata/ata-disk.c): ad_strategy() allocates a request
(struct ad_request, about 100 bytes) with M_NOWAIT | M_ZERO for each bio, and the
completion interrupt, on CPU 0, frees it.  A failed allocation is retried later, as the
driver requeues the bio.
"""

import kalloc
from kalloc.workload import Workload, free, get, malloc, put, work


class Ata(Workload):
    NAME = "ata"
    DESCRIPTION = "ATA disk requests: M_NOWAIT|M_ZERO per bio, freed by the completion interrupt"
    PARAMS = {"requests": 500, "seek_cycles": 3000}
    LIMITS = {"seek_cycles": (1, None)}     # randint(1, seek_cycles) needs at least 1

    def threads(self, ctx):
        done = ctx.queue("done")
        return [(cpu, f"strategy{cpu}", self.strategy(ctx, cpu, done)) for cpu in range(ctx.ncpus)] + \
               [(0, "ata-intr", self.interrupt(ctx, done))]

    def strategy(self, ctx, cpu, done):
        rng = ctx.rng(f"strategy{cpu}")
        for _ in range(ctx.params["requests"]):
            req = yield malloc(100, "ad_request", kalloc.M_NOWAIT | kalloc.M_ZERO)
            while req is None:                       # requeue the bio and retry
                ctx.count("retries")
                yield work(1000)
                req = yield malloc(100, "ad_request", kalloc.M_NOWAIT | kalloc.M_ZERO)
            yield work(rng.randint(1, ctx.params["seek_cycles"]))
            yield put(done, req)
        yield put(done, None)

    def interrupt(self, ctx, done):
        running = ctx.ncpus
        while running:
            req = yield get(done)
            if req is None:
                running -= 1
            else:
                yield free(req)


@kalloc.hookimpl
def kalloc_workloads():
    return [Ata]
