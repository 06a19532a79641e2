"""``net``: a network driver's receive path, with cross-CPU frees.

Imitates FreeBSD 4 / DragonFly 2003 receive processing: the NIC's interrupt handler (on
one CPU, as with a single-queue card) takes a packet off the ring and allocates its buffer
with M_DONTWAIT (M_NOWAIT) -- an mbuf (MSIZE 256) via MGETHDR, plus a 2048-byte cluster
(MCLBYTES) via MCLGET for packets that do not fit -- and queues it on the protocol input
queue (ipintrq); protocol processing runs on the other CPUs, which consume the packet and
m_freem() it there.  So every buffer is allocated on CPU 0 and freed elsewhere: on the 2003
slab that is one IPI per free; on kmem_map, two trips through the global lock.

The driver holds ``ring`` mbufs for the run (allocated M_WAITOK at attach, freed at detach):
they stand for the receive ring and the packets the stack holds (socket buffers, reassembly),
the standing part of the live set.  Each packet is received into the oldest ring buffer, which
is handed up, and a new buffer takes its place.  A protocol queue already holding
``ifq_maxlen`` packets drops the new one (IF_QFULL: m_freem on CPU 0, counted as ``drops``),
as the 2003 ``IF_HANDOFF`` did; so does a failed allocation, as if_rx does.

Parameters: ``ring`` buffers held, ``packets`` to receive, ``gap_cycles`` the NIC's quiet
time between packets (mean, exponential: CPU 0 is idle, ``idle``, unless something else runs
there), ``rx_cycles`` of interrupt-handler work per packet (also per ring buffer at attach
and detach), ``large_fraction`` of packets needing a cluster, ``proto_cycles`` of protocol
work per packet, ``ifq_maxlen`` (0: no limit), ``caches`` (1: mbufs and clusters are objects
of the caches "mbuf" and "mbuf_cluster", kalloc.cache; 0: mallocs of those types).  The mean
gap is at least 1 cycle and the fraction within 0..1.

Calibration (docs/calibration.md, made by docs/calibration.py).  The traces contain no
network family (one skbuff_head_cache event in exec), so the whole ``exec`` trace is used:

* ``ring`` = 2,350: exec's mean live set, 4,702 objects on 2 CPUs, 2,351 a CPU.
* ``rx_cycles`` + ``proto_cycles`` = 12,200: exec's mean busy gap between allocator events on
  one CPU is 4,367 cycles, and a packet makes 2 + 2 x large_fraction = 2.8 operations, so
  2.8 x 4,367 = 12,228 cycles of work a packet; split 2:5 between interrupt and protocol as
  the workload did before (3,500 / 8,700; the traces cannot tell the split).
* ``gap_cycles`` = 13,500: exec's CPUs are busy 4,367 of every 12,284 cycles between allocator
  events (36 %); 12,200 cycles of work a packet keep the trace's 2 CPUs 36 % busy at one packet
  per 12,200 / (2 x 0.36) = 17,000 cycles, of which 3,500 are the handler's work.
* ``ifq_maxlen`` = 50: IFQ_MAXLEN of the 2003 net/if.h (not from a trace).
* ``packets`` = 15,000 keeps a run near 50,000 allocator operations (not calibrated);
  ``large_fraction`` is kept (the traces have no packets).

Warm-up (``warmup_ops``): the ring's allocation plus the first 4 x ``ifq_maxlen``
packets (200 with no limit; at most a quarter of the packets), at 2 + 2 x large_fraction
operations a packet: the ring is full and the protocol queue has reached its working length.
"""

from kalloc.flags import M_NOWAIT, M_WAITOK
from kalloc.workload import Workload, cache_alloc, free, get, idle, malloc, put, work

MSIZE = 256
MCLBYTES = 2048


def _buffer(p: dict, size: int, name: str, flags: int) -> tuple:
    """An mbuf or a cluster: an object of its cache (``caches``, the default: mbufs and
    clusters never came from malloc, but from mb_map's own free lists in 4.x and UMA zones
    since 5.x), or a malloc of that type (``caches=0``, kalloc before object caches)."""
    return cache_alloc(name, size, flags) if p["caches"] else malloc(size, name, flags)


class Net(Workload):
    NAME = "net"
    DESCRIPTION = "NIC receive interrupts allocate mbufs/clusters (M_NOWAIT) on CPU 0, protocol threads free them"
    PARAMS = {"ring": 2350, "packets": 15000, "gap_cycles": 13500, "rx_cycles": 3500, "large_fraction": 0.4,
              "proto_cycles": 8700, "ifq_maxlen": 50, "caches": 1}
    LIMITS = {"gap_cycles": (1, None), "large_fraction": (0, 1), "caches": (0, 1)}

    @staticmethod
    def warmup_ops(params, ncpus):
        n = min(4 * params["ifq_maxlen"] if params["ifq_maxlen"] else 200, params["packets"] // 4)
        return params["ring"] + int(n * (2 + 2 * params["large_fraction"]))

    def threads(self, ctx):
        consumers = list(range(1, ctx.ncpus)) or [0]
        out = [(0, "rx-intr", self.rx(ctx, consumers))]
        out += [(cpu, f"netisr{cpu}", self.protocol(ctx, cpu)) for cpu in consumers]
        return out

    def rx(self, ctx, consumers):
        p = ctx.params
        rng = ctx.rng("rx")
        ring = []
        for _ in range(p["ring"]):
            ring.append((yield _buffer(p, MSIZE, "mbuf", M_WAITOK)))
            yield work(p["rx_cycles"])
        head = 0
        for i in range(p["packets"]):
            yield idle(int(rng.expovariate(1 / p["gap_cycles"])) + 1)
            yield work(p["rx_cycles"])
            m = yield _buffer(p, MSIZE, "mbuf", M_NOWAIT)
            if m is None:
                ctx.count("drops")
                continue
            if ring:                                 # received into the oldest ring buffer
                ring[head], m = m, ring[head]
                head = (head + 1) % len(ring)
            cl = None
            if rng.random() < p["large_fraction"]:
                cl = yield _buffer(p, MCLBYTES, "mbuf_cluster", M_NOWAIT)
                if cl is None:
                    ctx.count("drops")
                    yield free(m)
                    continue
            q = ctx.queue(consumers[i % len(consumers)])
            if p["ifq_maxlen"] and len(q) >= p["ifq_maxlen"]:
                ctx.count("drops")
                if cl is not None:
                    yield free(cl)
                yield free(m)
                continue
            yield put(q, (m, cl))
        for cpu in consumers:
            yield put(ctx.queue(cpu), None)          # end of input
        for m in ring:                               # detach
            yield free(m)
            yield work(p["rx_cycles"])

    def protocol(self, ctx, cpu):
        p = ctx.params
        q = ctx.queue(cpu)
        while True:
            pkt = yield get(q)
            if pkt is None:
                return
            yield work(p["proto_cycles"])
            m, cl = pkt
            if cl is not None:
                yield free(cl)
            yield free(m)
            ctx.count("delivered")
