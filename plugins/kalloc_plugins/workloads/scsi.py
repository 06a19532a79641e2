"""``scsi``: per-command control blocks with M_ZERO, size-0 requests, completion elsewhere.

Imitates a CAM SCSI host adapter driver of 2003 (``ahc``, ``xpt_alloc_ccb``): each command
gets a zeroed CCB (``union ccb``, about 400 bytes on i386) and a 32-byte sense buffer with
M_ZERO, and some requests are for 0 bytes -- the slab allocator's announcement: "ahc
depends on the malloc(0) feature".  Commands are issued on every CPU and complete in the
adapter's interrupt handler, on CPU 0, which frees the CCB there: frees cross CPUs.  Each
CPU keeps at most ``queue_depth`` commands outstanding (CAM's openings, the tagged queue
depth): a CPU that has that many waits for one of its commands to complete.

Parameters: ``commands`` per CPU, ``zero_size_every`` commands between size-0 requests,
``service_cycles`` per command (half to all of it when issuing; a quarter in the interrupt
handler), ``queue_depth`` outstanding commands per CPU (0: no limit).

Calibration (docs/calibration.md, made by docs/calibration.py), from the ``fs`` trace and
its ``block`` family (bio-*, biovec-*, virtblk's scatter lists: the traced machine's disk is
virtio-blk, not SCSI, and blk-mq preallocates its requests, so bios and their vectors are the
per-command objects):

* ``queue_depth`` = 7: the family's mean live set is 28 objects on 2 CPUs, 14 a CPU; a
  command holds 2 + 1/zero_size_every = 2.1 objects, so 14 / 2.1 = 6.7 commands.
* ``service_cycles`` = 31,000: the fs trace's mean busy gap between allocator events on one
  CPU is 7,446 cycles; a command makes 4.2 allocator operations and 3/4 + 1/4 = 1 x
  service_cycles of work, so 4.2 x 7,446 = 31,273, rounded.
* ``commands`` = 3,000 keeps the 4-CPU run near 50,000 allocator operations (not
  calibrated); ``zero_size_every`` is kept (Linux has no malloc(0) callers to count).

Warm-up (``warmup_ops``): each CPU's first 4 x queue_depth commands (40 with no limit; at
most a quarter of them), at 2 x (2 + 1/zero_size_every) operations a command: the queues
have filled and every size class the commands use exists.
"""

from kalloc.flags import M_NOWAIT, M_WAITOK, M_ZERO
from kalloc.workload import Workload, free, get, malloc, put, work

CCB = 400
SENSE = 32


class Scsi(Workload):
    NAME = "scsi"
    DESCRIPTION = "CAM/ahc SCSI: zeroed CCBs and sense buffers (M_ZERO), malloc(0), completion on CPU 0"
    PARAMS = {"commands": 3000, "zero_size_every": 10, "service_cycles": 31000, "queue_depth": 7}

    @staticmethod
    def warmup_ops(params, ncpus):
        n = min(4 * params["queue_depth"] if params["queue_depth"] else 40, params["commands"] // 4)
        every = params["zero_size_every"]
        return int(ncpus * n * 2 * (2 + (1 / every if every else 0)))

    def threads(self, ctx):
        done = ctx.queue("completions")
        out = [(cpu, f"issue{cpu}", self.issue(ctx, cpu, done)) for cpu in range(ctx.ncpus)]
        out.append((0, "ahc-intr", self.interrupt(ctx, done)))
        return out

    def issue(self, ctx, cpu, done):
        p = ctx.params
        rng = ctx.rng(f"issue{cpu}")
        credits = ctx.queue(f"completed{cpu}")
        outstanding = 0
        for i in range(p["commands"]):
            if p["queue_depth"] and outstanding >= p["queue_depth"]:
                yield get(credits)                  # wait for one of ours to complete
                outstanding -= 1
            ccb = yield malloc(CCB, "CAM CCB", M_WAITOK | M_ZERO)
            sense = yield malloc(SENSE, "devbuf", M_NOWAIT | M_ZERO)
            empty = None
            if p["zero_size_every"] and i % p["zero_size_every"] == 0:
                empty = yield malloc(0, "devbuf", M_WAITOK)
            yield work(rng.randint(p["service_cycles"] // 2, p["service_cycles"]))
            outstanding += 1
            yield put(done, (cpu, ccb, sense, empty))
        yield put(done, None)

    def interrupt(self, ctx, done):
        remaining = ctx.ncpus
        while remaining:
            cmd = yield get(done)
            if cmd is None:
                remaining -= 1
                continue
            cpu, *handles = cmd
            for h in handles:
                if h is not None:
                    yield free(h)
            yield work(ctx.params["service_cycles"] // 4)
            yield put(ctx.queue(f"completed{cpu}"), 1)
