"""``scsi``: per-command control blocks with M_ZERO, size-0 requests, completion elsewhere.

Imitates a CAM SCSI host adapter driver of 2003 (``ahc``, ``xpt_alloc_ccb``): each command
gets a zeroed CCB (``union ccb``, about 400 bytes on i386) and a 32-byte sense buffer with
M_ZERO, and some requests are for 0 bytes -- the slab allocator's announcement: "ahc
depends on the malloc(0) feature".  Commands are issued on every CPU and complete in the
adapter's interrupt handler, on CPU 0, which frees the CCB there: frees cross CPUs.

Parameters: ``commands`` per CPU, ``zero_size_every`` commands between size-0 requests,
``service_cycles`` per command.
"""

from kalloc.flags import M_NOWAIT, M_WAITOK, M_ZERO
from kalloc.workload import Workload, free, get, malloc, put, work

CCB = 400
SENSE = 32


class Scsi(Workload):
    NAME = "scsi"
    DESCRIPTION = "CAM/ahc SCSI: zeroed CCBs and sense buffers (M_ZERO), malloc(0), completion on CPU 0"
    PARAMS = {"commands": 1200, "zero_size_every": 10, "service_cycles": 2000}

    def threads(self, ctx):
        done = ctx.queue("completions")
        out = [(cpu, f"issue{cpu}", self.issue(ctx, cpu, done)) for cpu in range(ctx.ncpus)]
        out.append((0, "ahc-intr", self.interrupt(ctx, done)))
        return out

    def issue(self, ctx, cpu, done):
        p = ctx.params
        rng = ctx.rng(f"issue{cpu}")
        for i in range(p["commands"]):
            ccb = yield malloc(CCB, "CAM CCB", M_WAITOK | M_ZERO)
            sense = yield malloc(SENSE, "devbuf", M_NOWAIT | M_ZERO)
            empty = None
            if p["zero_size_every"] and i % p["zero_size_every"] == 0:
                empty = yield malloc(0, "devbuf", M_WAITOK)
            yield work(rng.randint(p["service_cycles"] // 2, p["service_cycles"]))
            yield put(done, (ccb, sense, empty))
        yield put(done, None)

    def interrupt(self, ctx, done):
        remaining = ctx.ncpus
        while remaining:
            cmd = yield get(done)
            if cmd is None:
                remaining -= 1
                continue
            for h in cmd:
                if h is not None:
                    yield free(h)
            yield work(ctx.params["service_cycles"] // 4)
