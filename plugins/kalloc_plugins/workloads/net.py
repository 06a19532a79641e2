"""``net``: a network driver's receive path, with cross-CPU frees.

Imitates FreeBSD 4 / DragonFly 2003 receive processing: the NIC's interrupt handler (on
one CPU, as with a single-queue card) takes a packet off the ring and allocates its buffer
with M_DONTWAIT (M_NOWAIT) -- an mbuf (MSIZE 256) via MGETHDR, plus a 2048-byte cluster
(MCLBYTES) via MCLGET for packets that do not fit -- and queues it on the protocol input
queue (ipintrq); protocol processing runs on the other CPUs, which consume the packet and
m_freem() it there.  So every buffer is allocated on CPU 0 and freed elsewhere: on the 2003
slab that is one IPI per free; on kmem_map, two trips through the global lock.

When an allocation fails the packet is dropped (counted as ``drops``), as if_rx does.
Parameters: ``packets`` to receive, ``gap_cycles`` between arrivals (mean, exponential),
``large_fraction`` of packets needing a cluster, ``proto_cycles`` of protocol work per packet.
The mean gap is at least 1 cycle and the fraction within 0..1.
"""

from kalloc.flags import M_NOWAIT
from kalloc.workload import Workload, free, get, malloc, put, work

MSIZE = 256
MCLBYTES = 2048


class Net(Workload):
    NAME = "net"
    DESCRIPTION = "NIC receive interrupts allocate mbufs/clusters (M_NOWAIT) on CPU 0, protocol threads free them"
    PARAMS = {"packets": 4000, "gap_cycles": 600, "large_fraction": 0.4, "proto_cycles": 1500}
    LIMITS = {"gap_cycles": (1, None), "large_fraction": (0, 1)}

    def threads(self, ctx):
        consumers = list(range(1, ctx.ncpus)) or [0]
        out = [(0, "rx-intr", self.rx(ctx, consumers))]
        out += [(cpu, f"netisr{cpu}", self.protocol(ctx, cpu)) for cpu in consumers]
        return out

    def rx(self, ctx, consumers):
        p = ctx.params
        rng = ctx.rng("rx")
        for i in range(p["packets"]):
            yield work(int(rng.expovariate(1 / p["gap_cycles"])) + 1)
            m = yield malloc(MSIZE, "mbuf", M_NOWAIT)
            if m is None:
                ctx.count("drops")
                continue
            cl = None
            if rng.random() < p["large_fraction"]:
                cl = yield malloc(MCLBYTES, "mbuf_cluster", M_NOWAIT)
                if cl is None:
                    ctx.count("drops")
                    yield free(m)
                    continue
            yield put(ctx.queue(consumers[i % len(consumers)]), (m, cl))
        for cpu in consumers:
            yield put(ctx.queue(cpu), None)          # end of input

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
