"""``isa``: a late-attaching ISA sound card doing DMA through its bounce buffer.

Imitates a 2003 i386 box: the kernel boots (SYSINITs, newbus probing and attaching some
forty devices, /etc/rc on every CPU: mounts, network, ~240 short commands, daemons and
gettys -- kalloc.dma.scenario.boot_threads, where each figure is explained), then the
user loads a sound driver (kldload: module image, symbol tables).  The SB16-like
driver, FreeBSD 4's sb16/sbc, claims its 16-bit DRQ and asks isa_dmainit for a bounce
buffer below 16 MiB (``bounce`` bytes on ``channel``), then plays and records blocks of
``block`` bytes: each transfer is isa_dmastart, the card moving the bytes through the
8237 (kalloc.dma.isa.device_transfer), and isa_dmadone, with the data checked on both
sides.  Play buffers come from malloc and are bounced whenever they are above 16 MiB or
physically scattered.

Counts (``workload_counts``): ``attached`` or ``bounce_failed`` (isa_dmainit failed:
4.8 printed "isa_dmainit(%d, %d) failed" and the driver carried on until its first
bounced transfer panicked; this driver stops instead, so the run finishes),
``transfers``, ``bytes`` and ``data_errors`` (must stay 0).

Parameters are checked as ``kalloc scenario isa-dma`` checks its options (the same
functions), and ``block`` must fit the bounce buffer.  The physical layout of a PC (page 0,
the 640 KiB-1 MiB hole, the kernel image at 1 MiB; so physmem must go beyond its end)
is wired by the first operation, before the boot load (``wire_after_boot``).  The
harness has booted the backend by then; layout pages its boot allocations took (the
slab's 1 MiB kmemusage array, under a lowest-first order) are made up for by as many
pages after the image, where they would have gone.  ``kalloc scenario isa-dma`` wires
the layout before the backend boots.
"""

from kalloc.dma.isa import isa_dma_acquire, isa_dmainit
from kalloc.dma.scenario import (KERNEL_IMAGE, boot_threads, check_bounce, check_kernel_image, check_scale,
                                 dma_round_trip, kldload, wire_after_boot)
from kalloc.workload import Workload, call, get, work


class Isa(Workload):
    NAME = "isa"
    DESCRIPTION = "boot load, then an SB16-like driver attaches late: isa_dmainit and DMA through its bounce buffer"
    PARAMS = {"channel": 5, "bounce": 65536, "block": 16384, "transfers": 32, "scale": 1.0,
              "wire_layout": True, "kernel_image": KERNEL_IMAGE, "think_cycles": 20000}

    @staticmethod
    def check_params(p):
        """As ``kalloc scenario isa-dma`` checks its options; and the block fits the bounce buffer."""
        check_bounce(p["channel"], p["bounce"])
        if not 0 < p["block"] <= p["bounce"] or (p["channel"] & 4 and p["block"] % 2):
            raise ValueError(f"block must be 1 byte to bounce ({p['bounce']}), an even count on the word "
                             f"channels 5-7, got {p['block']}")
        check_kernel_image(p["kernel_image"])
        check_scale(p["scale"])

    def threads(self, ctx):
        p = ctx.params
        threads = [(0, "firmware", self.firmware(ctx))] if p["wire_layout"] else []
        return threads + boot_threads(ctx, p["scale"]) + [(0, "snd", self.driver(ctx, 0))]

    def firmware(self, ctx):
        yield call(wire_after_boot, ctx.params["kernel_image"])

    def driver(self, ctx, cpu):
        p = ctx.params
        chan = p["channel"]
        for _ in range(ctx.ncpus):
            yield get(ctx.queue("booted"))
        yield from kldload(ctx)
        yield call(isa_dma_acquire, chan)
        if (yield call(isa_dmainit, chan, p["bounce"], cpu)):
            ctx.count("bounce_failed")
            return
        ctx.count("attached")
        rng = ctx.rng("snd")
        for _ in range(p["transfers"]):
            ok = yield call(dma_round_trip, chan, p["block"], rng.randbytes(64), cpu)
            ctx.count("transfers", 2)
            ctx.count("bytes", 2 * p["block"])
            if not ok:
                ctx.count("data_errors")
            yield work(rng.randint(p["think_cycles"] // 2, p["think_cycles"]))
