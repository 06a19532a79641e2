"""The harness: one operation stream, any backend, N CPUs in deterministic virtual time.

Deterministic: the same RunSpec gives the same record, byte for byte (``wall_seconds``
aside); nothing reads a clock except that field.

How time passes
---------------
Each simulated CPU has a clock, ``free_at[cpu]``: when it finishes what it is doing.  A
thread's next operation is an engine event at the time the thread is ready; it starts
when its CPU is free, runs, and the CPU is busy for the operation's cost::

    cpu0  |--malloc--|--work--------|--free--|          |-IPI handler-|
    cpu1       |...wait lock...|--malloc--|--free(remote)-->  (ipi_latency)
                    ^ kmem_map's global lock is held by cpu0

The cost of an operation is priced from the counters it moved (kalloc.costs): the
backend counts locks, critical sections, IPIs, pages and zeroed bytes; the harness
reads them before and after.  Waiting is time, not price:

* **Global lock** (an operation that took ``lock_acquires``): it starts when the lock is
  free, and holds it for its whole cost; a hand-off from another CPU adds the
  cache-line transfer.  This is how kmem_map's splhigh/giant serialises CPUs.
* **IPI** (``machine.send_ipi``): the sender pays ``ipi_send``; the handler runs on the
  target ``ipi_latency`` cycles later, after whatever that CPU is doing, and costs
  ``ipi_receive`` plus what it does (the slab's remote free).
* **Sleep**: a backend that must sleep raises ``Deadlock`` before changing anything; the
  thread is parked and retries after the next free.  If nothing is left to run and
  someone still sleeps, the run stops with a ``Deadlock`` naming who waits for what.

A ``KernelPanic`` stops the run; the record keeps the partial results and the message.
"""

from __future__ import annotations

import statistics
import time as _time

import attrs
from attrs import field, frozen

from kalloc import __version__, plugins
from kalloc.backends.debug import DebugBackend
from kalloc.costs import CostModel
from kalloc.dma import dma_stats
from kalloc.engine import URGENT, Engine
from kalloc.errors import Deadlock, KernelPanic
from kalloc.flags import ZERO
from kalloc.malloc import boot
from kalloc.workload import (CALL, FREE, GET, MALLOC, PUT, READ, REALLOC, WORK, WRITE, Context,
                             resolve_params)

SERIES_POINTS = 200


@frozen
class RunSpec:
    """Everything that defines one run (picklable: runs go to other processes)."""

    backend: str
    workload: str
    ncpus: int = 1
    seed: int = 0
    physmem: object = "64M"
    arch: str = "i386"
    options: dict = field(factory=dict)
    params: dict = field(factory=dict)
    costs: dict = field(factory=dict)


class _Thread:
    __slots__ = ("name", "cpu", "gen", "op", "waiting")

    def __init__(self, name, cpu, gen):
        self.name, self.cpu, self.gen = name, cpu, gen
        self.op = None
        self.waiting = None  # what it sleeps on, for the deadlock report


class Simulator:
    """One run: a booted kernel, the engine, the CPUs' clocks and the handle table."""

    def __init__(self, kernel, costs: CostModel):
        self.k = kernel
        self.k_malloc, self.k_free, self.k_usable_size = kernel.malloc, kernel.free, kernel.usable_size
        self.be = kernel.backend
        self.vm = kernel.vm
        self.m = kernel.machine
        self.costs = costs
        self.engine = Engine()
        n = self.m.ncpus
        self.clock = [0] * n
        self.busy = [0] * n
        self.lock_free_at = 0
        self.lock_owner = -1
        self.lock_wait = 0
        self.handles: dict = {}
        self.next_handle = 0
        self.mtypes: dict = {}
        self.blocked: list = []
        self.waiters: dict = {}      # id(queue) -> [threads]
        self.pending_ipis: list = []
        self.ops = {"malloc": 0, "free": 0, "realloc": 0, "failed": 0}
        self.live_req = self.live_usable = 0
        self.peak_req = 0
        self.frag_at_peak = 0
        self.zero_req = 0
        self.series: list = []
        self.nops = 0
        self.boot_fp = self.peak_fp = kernel.footprint()
        self.zero0 = self.vm.bytes_zeroed
        self.m.ipi_handler = self._ipi
        base, lock, crit, cas, ipi, cold, page, zero, copy, shoot = costs.unit_prices(n)
        self._base, self._hot_prices = base, (lock, crit, cold)
        self._rare_prices = (cas, ipi, page, shoot, zero, copy)
        self._page_size = self.m.arch.page_size
        self.fp = self.boot_fp
        self._last = self._counts()
        self.debug = isinstance(self.be, DebugBackend)

    # --- counters and prices ------------------------------------------------------------
    # Every backend or VM call the harness makes is inside a priced section that ends
    # with _charge, so the counters read at the end of one operation are those at the
    # start of the next: one read per operation.  The three the fast paths move (locks,
    # critical sections, cold allocations) are priced one by one; the rest are compared
    # as one tuple and priced only when something moved.  Direct attribute reads: an
    # attrgetter over the same ten counters costs three times as much.  _charge repeats
    # the read of _counts in line: the call would add 4 % to a replay.
    def _counts(self) -> tuple:
        be, vm, m = self.be, self.vm, self.m
        return (be.lock_acquires, be.crit_sections, be.cold_allocs,
                (be.remote_cas, m.ipis, vm.pages_mapped, vm.tlb_shootdowns, vm.bytes_zeroed, vm.bytes_copied,
                 m.free_count))

    def _charge(self, cpu: int, start: int, cycles: int) -> int:
        """Occupy ``cpu`` from ``start`` (and the global lock if the operation took it) for
        ``cycles`` plus the price of the counters moved since the last charge; returns the
        end time.  An operation passes its op_base, a WORK step its own cycles."""
        be, vm, m = self.be, self.vm, self.m
        lock, crit, cold = be.lock_acquires, be.crit_sections, be.cold_allocs
        rare = (be.remote_cas, m.ipis, vm.pages_mapped, vm.tlb_shootdowns, vm.bytes_zeroed, vm.bytes_copied,
                m.free_count)
        l0, c0, k0, r0 = self._last
        self._last = (lock, crit, cold, rare)
        p_lock, p_crit, p_cold = self._hot_prices
        cost = cycles + (lock - l0) * p_lock + (crit - c0) * p_crit + (cold - k0) * p_cold
        if rare != r0:
            cas, ipis, pages, shoot, zeroed, copied, free_count = rare
            p_cas, p_ipi, p_page, p_shoot, p_zero, p_copy = self._rare_prices
            cost += ((cas - r0[0]) * p_cas + (ipis - r0[1]) * p_ipi + (pages - r0[2]) * p_page
                     + (shoot - r0[3]) * p_shoot + ((zeroed - r0[4]) * p_zero + (copied - r0[5]) * p_copy) // 1024)
            if free_count != r0[6]:              # pages changed hands: a new footprint
                self.fp = fp = (self.m.npages - free_count) * self._page_size
                if fp > self.peak_fp:
                    self.peak_fp = fp
        if lock != l0:
            if start < self.lock_free_at:
                self.lock_wait += self.lock_free_at - start
                start = self.lock_free_at
            if self.lock_owner != cpu and self.lock_owner != -1:
                cost += self.costs.lock_handoff
            self.lock_free_at = start + cost
            self.lock_owner = cpu
        end = start + cost
        self.clock[cpu] = end
        self.busy[cpu] += cost
        if self.pending_ipis:
            for dst, func, args in self.pending_ipis:
                self.engine.schedule(end + self.costs.ipi_latency, self._interrupt, dst, func, args,
                                     priority=URGENT)
            self.pending_ipis.clear()
        self.nops = n = self.nops + 1
        if not n & 63:
            self.series.append((end, self.fp, self.live_req))
        return end

    def unpriced(self) -> None:
        """Drop what the counters moved since the last charge: an attempt that sleeps
        (``Deadlock``) undoes itself and is not priced; its retry after a free is."""
        self._last = self._counts()

    def _ipi(self, src, dst, func, args):
        self.pending_ipis.append((dst, func, args))

    # --- running ----------------------------------------------------------------------------
    def add_thread(self, cpu: int, name: str, gen, at: int = 0) -> None:
        if not 0 <= cpu < self.m.ncpus:
            raise ValueError(f"thread {name!r} wants cpu {cpu}, machine has {self.m.ncpus}")
        t = _Thread(name, cpu, gen)
        if self._advance(t, None):
            self.engine.schedule(at, self._exec, t)

    def _advance(self, t: _Thread, value) -> bool:
        try:
            t.op = t.gen.send(value)
            return True
        except StopIteration:
            return False

    def _exec(self, t: _Thread) -> None:
        now = self.engine.now
        cpu = t.cpu
        if self.clock[cpu] > now:
            self.engine.schedule(self.clock[cpu], self._exec, t)
            return
        if self.debug:
            self.be.site_hint = f"thread {t.name} (cpu {cpu}) at cycle {now}"
        try:
            result, end = self._do(t, now)
        except Deadlock as e:
            self.unpriced()
            t.waiting = f"{e} [{t.name} on cpu {cpu}]"
            self.blocked.append(t)
            return
        if result is _BLOCK:
            return
        self._next(t, result, end)

    def _next(self, t: _Thread, result, end: int) -> None:
        if self._advance(t, result):
            self.engine.schedule(end, self._exec, t)

    def _interrupt(self, dst: int, func, args) -> None:
        start = max(self.engine.now, self.clock[dst])
        func(*args)
        self._charge(dst, start, self._base + self.costs.ipi_receive)
        if self.blocked:
            self._wake()

    def _do(self, t: _Thread, now: int):
        op = t.op
        code = op[0]
        k, cpu = self.k, t.cpu
        if code == WORK:
            return None, self._charge(cpu, now, op[1])
        if code == MALLOC:
            _, size, tname, flags = op
            mt = self._mtype(tname)
            addr, end = self.malloc(cpu, now, size, mt, flags)
            return (None if addr is None else self._bind(addr, mt, size, flags)), end
        if code == FREE:
            addr, mt = self._unbind(op[1])[:2]
            return None, self.free(cpu, now, addr, mt)
        if code == REALLOC:
            _, h, size, flags = op
            addr, mt = self.handles[h][:2]
            new = k.realloc(addr, size, mt, flags, cpu)
            self.ops["realloc"] += 1
            result = None
            if new is None:
                self.ops["failed"] += 1
            else:
                self._unbind(h)
                result = self._bind(new, mt, size, flags)
            end = self._charge(cpu, now, self._base)
            if self.blocked:
                self._wake()
            return result, end
        if code == WRITE:
            k.write(self.handles[op[1]][0], op[2])
            return None, now
        if code == READ:
            return k.read(self.handles[op[1]][0], op[2]), now
        if code == PUT:
            q = op[1]
            waiting = self.waiters.get(id(q))
            if waiting:
                w = waiting.pop(0)
                w.waiting = None
                self._next(w, op[2], max(now, self.clock[w.cpu]))
            else:
                q.append(op[2])
            return None, now
        if code == GET:
            q = op[1]
            if q:
                return q.popleft(), now
            t.waiting = f"{t.name} on cpu {cpu} waits on an empty queue"
            self.waiters.setdefault(id(q), []).append(t)
            return _BLOCK, now
        if code == CALL:
            result = op[1](k, *op[2])
            return result, self._charge(cpu, now, self._base)
        raise ValueError(f"thread {t.name!r} yielded an unknown operation {op!r}")

    def malloc(self, cpu: int, now: int, size: int, mt, flags: int):
        """One priced malloc on cpu at time now: (address or None, end time)."""
        addr = self.k_malloc(size, mt, flags, cpu)
        ops = self.ops
        ops["malloc"] += 1
        if addr is None:
            ops["failed"] += 1
        return addr, self._charge(cpu, now, self._base)

    def free(self, cpu: int, now: int, addr: int, mt) -> int:
        """One priced free; wakes sleepers.  Returns the end time."""
        self.k_free(addr, mt, cpu)
        self.ops["free"] += 1
        end = self._charge(cpu, now, self._base)
        if self.blocked:
            self._wake()
        return end

    def _mtype(self, tname: str):
        mt = self.mtypes.get(tname)
        if mt is None:
            mt = self.mtypes[tname] = self.k.malloc_type(tname)
        return mt

    def _bind(self, addr: int, mt, size: int, flags: int, h=None) -> int:
        """A handle for a new live allocation: the next number, or ``h`` (replay uses its keys)."""
        if h is None:
            h = self.next_handle
            self.next_handle = h + 1
        usable = self.k_usable_size(addr)
        self.handles[h] = (addr, mt, size, usable)
        self.live_req += size
        self.live_usable += usable
        if flags & ZERO:
            self.zero_req += size
        if self.live_req > self.peak_req:
            self.peak_req = self.live_req
            self.frag_at_peak = self.live_usable - self.live_req
        return h

    def _unbind(self, h):
        try:
            rec = self.handles.pop(h)
        except (KeyError, TypeError):
            raise ValueError(f"workload freed handle {h!r}, which is not live") from None
        self.live_req -= rec[2]
        self.live_usable -= rec[3]
        return rec

    def _wake(self) -> None:
        """Memory was freed: sleeping mallocs retry (wakeup(type) / vm_wait wakeups)."""
        if self.blocked:
            woken, self.blocked = self.blocked, []
            for t in woken:
                t.waiting = None
                self.engine.schedule(max(self.engine.now, self.clock[t.cpu]), self._exec, t)

    def run(self) -> None:
        self.engine.run()
        stuck = self.blocked + [t for ts in self.waiters.values() for t in ts]
        if stuck:
            raise Deadlock("deadlock: " + "; ".join(t.waiting for t in stuck),
                           channel=[t.name for t in stuck])

    # --- the record ------------------------------------------------------------------------
    def sim_record(self) -> dict:
        makespan = max(self.clock)
        nops = self.ops["malloc"] + self.ops["free"] + self.ops["realloc"]
        return {
            "cycles": sum(self.busy),
            "makespan_cycles": makespan,
            "throughput_ops_per_mcycle": round(nops * 1e6 / makespan, 3) if makespan else 0.0,
            "lock_wait_cycles": self.lock_wait,
            "ipis": self.m.ipis,
            "tlb_shootdowns": self.vm.tlb_shootdowns,
        }

    def memory_record(self) -> dict:
        end_fp = self.k.footprint()
        grown = self.peak_fp - self.boot_fp
        return {
            "peak_requested_bytes": self.peak_req,
            "peak_footprint_bytes": self.peak_fp,
            "end_footprint_bytes": end_fp,
            "boot_footprint_bytes": self.boot_fp,
            "peak_growth_bytes": grown,
            "overhead_ratio": round(grown / self.peak_req, 4) if self.peak_req else None,
            "internal_fragmentation_bytes": self.frag_at_peak,
        }

    def series_record(self) -> dict:
        pts = self.series
        if len(pts) > SERIES_POINTS:
            step = len(pts) / SERIES_POINTS
            pts = [pts[int(i * step)] for i in range(SERIES_POINTS)]
        return {"t": [p[0] for p in pts], "footprint": [p[1] for p in pts], "requested": [p[2] for p in pts]}


_BLOCK = object()


def boot_for(spec: RunSpec):
    return boot(spec.backend, ncpus=spec.ncpus, physmem=spec.physmem, seed=spec.seed,
                arch=spec.arch, **spec.options)


def record(spec: RunSpec, sim: Simulator, extra: dict, wall: float, panic: str | None) -> dict:
    """The JSON record of one run (keys are a public contract; see docs/comparing.md)."""
    k = sim.k
    rec = {
        "backend": spec.backend,
        "workload": spec.workload,
        "ncpus": spec.ncpus,
        "seed": spec.seed,
        "physmem": k.machine.physmem,
        "arch": spec.arch,
        "params": extra.pop("params", dict(spec.params)),
        "options": dict(spec.options),
        "ops": dict(sim.ops),
        "sim": sim.sim_record(),
        "memory": sim.memory_record(),
        "zeroing": {"bytes_zeroed": sim.vm.bytes_zeroed - sim.zero0, "bytes_zero_requested": sim.zero_req},
        "counters": k.backend.counters(),
        "types": [{"name": n, **k.type_counters(t)} for n, t in sorted(k.types.items())],
        "classes": [c for c in k.backend.classes() if c.get("slabs") or c.get("inuse")],
        "series": sim.series_record(),
        **extra,
        "panic": panic,
        "version": __version__,
        "wall_seconds": round(wall, 3),
    }
    return rec


def run_one(spec: RunSpec) -> dict:
    """Run one workload on one backend; returns its record."""
    t0 = _time.perf_counter()
    cls = plugins.workload_class(spec.workload)
    params = resolve_params(cls, spec.params)
    costs = CostModel.from_config(spec.costs)
    k = boot_for(spec)
    sim = Simulator(k, costs)
    ctx = Context(spec.workload, params, spec.ncpus, spec.seed)
    for cpu, name, gen in cls().threads(ctx):
        sim.add_thread(cpu, name, gen)
    panic = None
    try:
        sim.run()
    except KernelPanic as e:
        panic = str(e)
    extra = {"params": params, "workload_counts": dict(sorted(ctx.counts.items())), "dma": dma_stats(k)}
    rec = record(spec, sim, extra, _time.perf_counter() - t0, panic)
    plugins.plugin_manager().hook.kalloc_run_end(record=rec)
    return rec


# --- grids (executed by kalloc.executors) -------------------------------------------

SUMMARY_METRICS = (
    ("sim", "throughput_ops_per_mcycle"),
    ("sim", "makespan_cycles"),
    ("sim", "lock_wait_cycles"),
    ("sim", "ipis"),
    ("memory", "peak_footprint_bytes"),
    ("memory", "peak_growth_bytes"),
    ("memory", "overhead_ratio"),
    ("zeroing", "bytes_zeroed"),
    ("ops", "failed"),
)


def summarize(records: list) -> list:
    """Group repeated runs (same backend, workload, ncpus; different seeds) into one row
    each with mean, stdev, min and max of the SUMMARY_METRICS."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["workload"], r["ncpus"], r["backend"]), []).append(r)
    rows = []
    for (wl, n, be), rs in groups.items():
        row = {"workload": wl, "ncpus": n, "backend": be, "runs": len(rs),
               "seeds": [r["seed"] for r in rs], "panics": sum(1 for r in rs if r["panic"])}
        for sec, key in SUMMARY_METRICS:
            vals = [r[sec][key] for r in rs if r[sec][key] is not None]
            if vals:
                row[key] = {"mean": statistics.fmean(vals), "stdev": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                            "min": min(vals), "max": max(vals)}
        rows.append(row)
    return rows


def specs_for(backends, workloads, ncpus_list, seeds, **common) -> list:
    """The grid in a fixed order: workload, ncpus, seed, backend (backends side by side)."""
    return [attrs.evolve(RunSpec(b, w, n, s), **common)
            for w in workloads for n in ncpus_list for s in seeds for b in backends]

