"""Replay a real kernel allocation trace on any backend, priced in virtual time.

Deterministic: the same trace, backend, options and CPU count give the same record.

    trace lines --parse--> events --rules--> ops (cpu, MALLOC|FREE, key, ...) --> Simulator
                                                                               (kalloc.harness)

The trace's timestamps set *when* each operation is issued: an event at trace time ``ts``
starts on its CPU at ``(ts - ts0) * clock_hz`` cycles, or later if that CPU (or the
global lock) is still busy, so the allocator's costs delay the recorded workload the way
they would on the real machine, and lock contention and IPI latency come out as in the
harness.  Keys map to the addresses the simulated backend returns; trace addresses mean
nothing to another allocator.

Choices (docs/replay.md):

* CPUs: ``ncpus`` defaults to the highest CPU seen in the first events (a lookahead of
  ``LOOKAHEAD`` events) plus one; an event on a CPU the simulated machine does not have
  runs on ``cpu % ncpus`` and is counted in ``trace.folded_cpu_events``.
* malloc types are per cache name and per kmalloc call-site function, created on demand
  with the backend's default limit.
* An M_WAITOK allocation that would sleep (a backend at a type limit or out of pages)
  cannot wait for a future the trace already fixed: it is counted in ``trace.would_sleep``
  and treated as failed, like the allocations the backend refuses (``ops.failed``); their
  later frees are skipped.
* A free is priced on the CPU the trace recorded; on slab a free of another CPU's chunk is
  a remote free (an IPI in the 2003 design).
"""

from __future__ import annotations

import itertools
import sys
import time as _time

from kalloc.costs import CostModel
from kalloc.errors import Deadlock, KernelPanic
from kalloc.harness import RunSpec, Simulator, boot_for, record
from kalloc.replay.parse import TraceParser, open_trace
from kalloc.replay.rules import MALLOC, TraceStats, replay_ops

LOOKAHEAD = 10000


def replay_trace(path, backend: str = "slab", ncpus: int | None = None, physmem="512M", arch="i386",
                 options: dict | None = None, costs: dict | None = None, seed: int = 0,
                 progress=None) -> dict:
    """Replay the trace at ``path`` ("-" for stdin) on one backend; returns the run record."""
    t0 = _time.perf_counter()
    model = CostModel.from_config(costs or {})
    parser = TraceParser()
    stats = TraceStats()
    lines = open_trace(path)
    try:
        events = parser.events(lines)
        head = list(itertools.islice(events, LOOKAHEAD))
        if ncpus is None:
            ncpus = max((e[1] for e in head), default=0) + 1
        spec = RunSpec(backend, f"trace:{path}", ncpus, seed, physmem, arch, dict(options or {}), {}, dict(costs or {}))
        sim = Simulator(boot_for(spec), model)
        clock = [head[0][0] if head else 0.0, 0.0]   # ts0, ts of the event being replayed

        def timed(evs):
            for e in evs:
                clock[1] = e[0]
                yield e

        extra = {"would_sleep": 0, "folded_cpu_events": 0}
        panic = None
        try:
            _drive(sim, replay_ops(timed(itertools.chain(head, events)), stats), clock, model.clock_hz,
                   ncpus, extra, progress)
        except KernelPanic as e:
            panic = str(e)
    finally:
        if lines is not sys.stdin:
            lines.close()
    stats.take_parser_counts(parser)
    trace = {**stats.as_dict(), **extra, "path": str(path)}
    return record(spec, sim, {"params": {}, "trace": trace}, _time.perf_counter() - t0, panic)


def _drive(sim: Simulator, ops, clock: list, hz: int, ncpus: int, extra: dict, progress) -> None:
    keys: dict = {}       # trace key -> harness handle
    mtype = sim._mtype
    engine = sim.engine
    ts0 = clock[0]
    n = 0
    for op in ops:
        cpu = op[0]
        if cpu >= ncpus:
            cpu %= ncpus
            extra["folded_cpu_events"] += 1
        now = int((clock[1] - ts0) * hz)
        if now < engine.now:
            now = engine.now
        if engine.queue:
            engine.run(until=now)   # IPI handlers due by now
        if now < sim.clock[cpu]:
            now = sim.clock[cpu]
        if op[1] == MALLOC:
            _, _, key, size, flags, tname = op
            mt = mtype(tname)
            try:
                addr, _ = sim.malloc(cpu, now, size, mt, flags)
            except Deadlock:
                extra["would_sleep"] += 1
                sim.ops["failed"] += 1
                continue
            if addr is not None:
                keys[key] = sim._bind(addr, mt, size, flags)
        else:
            h = keys.pop(op[2], None)
            if h is not None:
                addr, mt, _ = sim._unbind(h)
                sim.free(cpu, now, addr, mt)
        n += 1
        if progress and not n & 0xFFFF:
            progress(n)
    engine.run()
