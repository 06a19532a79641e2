"""The harness: one operation stream, any backend, N CPUs in deterministic virtual time.

Deterministic: the same RunSpec gives the same record, byte for byte (``wall_seconds``
aside); nothing reads a clock except that field.

Three parts, each reading top-down: **time** is here (the engine, each CPU's clock, the
global lock, IPI and TLB-invalidation interrupts, sleeping threads); **pricing**
(kalloc.pricing) turns the counters an operation moved into cycles; **metrics**
(kalloc.metrics) records phases, latency, per-CPU time and memory.

How time passes
---------------
Each simulated CPU has a clock, ``clock[cpu]``: when it finishes what it is doing.  A
thread's next allocator operation is an engine event at the time the thread is ready; it
starts when its CPU is free, runs, and the CPU is busy for the operation's cost::

    cpu0  |--malloc--|--work-----[IPI handler]----|--free--|
    cpu1       |...wait lock...|--malloc--|--free(remote)-->  (ipi_latency)
                    ^ kmem_map's global lock is held by cpu0

* **Work** (``work(cycles)``) is interruptible: an interrupt that arrives during it runs at
  once and pushes the rest of the work later.  Allocator operations and handlers are not
  (crit_enter, splhigh): an interrupt arriving during one runs when it ends.  ``idle(cycles)``
  takes the thread off its CPU: the CPU is idle unless something else runs there.
  A thread's work right after its operation is folded into that operation's event, and an
  operation due before every other event runs without going through the event heap:
  neither changes the order of events.
* **Global lock** (an operation that took ``lock_acquires``): it starts when the lock is
  free and holds it for the locked part of its cost (``lock_hold="serialised"``: all but a
  bzero the backend does after unlocking, ``ZERO_UNDER_LOCK = False``, as 4.8's malloc does
  after ``splx``); a hand-off from another CPU adds ``lock_handoff``.  The wait is part of the
  operation's latency, and busy time: the CPU spins.  ``giant=True`` puts every operation,
  work included, under that one lock (a what-if, labelled in the tables).
* **IPI** (``machine.send_ipi``): the sender pays ``ipi_send``; the message arrives
  ``ipi_latency`` cycles after the operation; with ``ipi_drain`` one interrupt
  (``ipi_receive``) runs every message queued by then or while it runs, each costing the
  work it does, as DragonFly's lwkt_process_ipiq drains its FIFO.  A passive message
  (``send_ipi_passive``) raises no interrupt: it is processed with the next interrupt on its
  CPU or, the CPU being free, when it arrives, without ``ipi_receive``.
* **TLB invalidation** (``tlb_model="2003"``): each unmapping on SMP is an all-but-self
  IPI the initiator does not wait for; every other CPU takes an interrupt
  (``ipi_receive + tlb_flush``).
* **Idle time** (``idle_zero``): a CPU that was idle zeroes free pages, as the idle loop's
  vm_page_zero_idle does (kalloc.machine); it is accounted when the CPU next starts work.
* **Sleep**: a backend that must sleep raises ``Deadlock`` before changing anything; the
  thread is parked and retries after the next free.  If nothing is left to run and
  someone still sleeps, the run stops with a ``Deadlock`` naming who waits for what.

A ``KernelPanic`` or a ``Deadlock`` stops the run; ``run_one``'s record keeps the partial
results and the message (``panic``), so a grid goes on with its other cells.  A workload's
own bug (it yields no operation, or frees, reads or writes a handle that is not live) is a
``WorkloadError`` that stops everything, naming the workload, the thread and the operation.
It is found on the exception path only: the hot path runs operations as they come, and when
running one raises, ``_blame`` asks whether it was the workload's fault.
"""

from __future__ import annotations

import statistics
import time as _time
from heapq import heappush

import attrs
from attrs import field, frozen

from kalloc import __version__, plugins
from kalloc.backends.base import COMMON_OPTIONS, COUNTERS, MACHINE_OPTIONS
from kalloc.backends.debug import DebugBackend
from kalloc.cache import Cache
from kalloc.costs import CostModel
from kalloc.dma import dma_stats
from kalloc.engine import NORMAL, URGENT, Engine
from kalloc.errors import Deadlock, KernelPanic, WorkloadError
from kalloc.flags import ZERO
from kalloc.malloc import boot
from kalloc.metrics import Metrics
from kalloc.pricing import Pricing
from kalloc.provenance import provenance
from kalloc.workload import (CACHE_ALLOC, CALL, FREE, GET, IDLE, MALLOC, PUT, READ, REALLOC, WORK, WRITE, Context,
                             describe, malformed, resolve_params)

SERIES_POINTS = 200
HZ = 100            # clock interrupts a second (sys/conf/param.c, DragonFly 2003 and FreeBSD 4.8)


@frozen
class RunSpec:
    """Everything that defines one run (picklable: runs go to other processes).
    ``warmup``: allocator operations before measuring starts; None, the workload's own.
    ``variant``, ``workload_variant``: the labels tables show and group by (kalloc.variants);
    None, the backend's (workload's) name: options given here alone do not make a variant, as
    ``--set`` does not on the command line."""

    backend: str
    workload: str
    ncpus: int = 1
    seed: int = 0
    physmem: object = "64M"
    arch: str = "i386"
    options: dict = field(factory=dict)
    params: dict = field(factory=dict)
    costs: dict = field(factory=dict)
    warmup: int | None = None
    variant: str | None = None
    workload_variant: str | None = None


class _Thread:
    __slots__ = ("name", "cpu", "gen", "send", "op", "waiting")

    def __init__(self, name, cpu, gen):
        self.name, self.cpu, self.gen = name, cpu, gen
        self.send = gen.send         # bound once: the harness sends a result per operation
        self.op = None
        self.waiting = None  # the Deadlock it sleeps on in a backend, for the deadlock report


class Simulator:
    """One run: a booted kernel, the engine, the CPUs' clocks, the lock and the handle table."""

    def __init__(self, kernel, costs: CostModel, warmup: int = 0, workload: str = ""):
        self.k = kernel
        self.workload = workload     # its name, for the error that blames it
        self.k_malloc, self.k_free, self.k_usable_size = kernel.malloc, kernel.free, kernel.usable_size
        self.be = be = kernel.backend
        self.vm = kernel.vm
        self.m = m = kernel.machine
        self.costs = costs
        self.mech = {k: kernel.options.get(k, COMMON_OPTIONS[k].default) for k in MACHINE_OPTIONS}
        for c in COUNTERS:                       # a backend that keeps fewer counters moves none
            if not hasattr(be, c):
                setattr(be, c, 0)
        self.engine = Engine()
        n = self.ncpus = m.ncpus
        self.clock = [0] * n
        self.irq_ok = [0] * n        # from when an interrupt may run (the end of the last uninterruptible part)
        self.drain_end = [0] * n     # the end of the last IPI-queue drain (messages arriving before it join it)
        self.lock_free_at = 0
        self.lock_owner = -1
        self.handles: dict = {}
        self.next_handle = 0
        self.mtypes: dict = {}
        self.caches: dict = {}       # name -> (the kernel's Cache, its slot size): workloads and replay name them
        self.blocked: list = []
        self.waiters: dict = {}      # id(queue) -> [threads]
        self.pending: list = []      # IPI messages sent by the operation being priced
        self.ops = {"malloc": 0, "free": 0, "realloc": 0, "failed": 0}
        self.ipi_interrupts = self.tlb_interrupts = self.passive_runs = self.tlb_ipis = 0
        self.latched = [False] * n   # an IPI arrived during the drain: one more interrupt after it
        self.parked = [[] for _ in range(n)]   # passive messages waiting for a drain
        self.tick_due = [False] * n
        self.tick = costs.clock_hz // HZ
        self.chunk_cpu: dict = {}    # address -> the CPU that freed it (coherence)
        self.coherent = self.mech["coherence"] and n > 1
        self.giant = self.mech["giant"]
        self.drain = self.mech["ipi_drain"]
        self.zero_idle = m.zero_idle if self.mech["idle_zero"] else None
        self.page_cycles = 4 * costs.zero_per_kbyte
        self.unlocked_zero = self.mech["lock_hold"] == "serialised" and not getattr(be, "ZERO_UNDER_LOCK", True)
        self.metrics = Metrics(n, warmup, kernel.footprint())
        self.pricing = Pricing(kernel, costs, self.metrics, self.mech["kernel_build"], self.mech["tlb_model"])
        self._base, self._handoff = costs.op_base, costs.lock_handoff
        self._lat_m, self._lat_f = self.metrics.lat["malloc"], self.metrics.lat["free"]
        self._step = self._exec      # the thread-step callback, bound once (one event per operation)
        self.m.ipi_handler = self._ipi
        self.m.passive_handler = self._passive
        self.debug = isinstance(be, DebugBackend)
        self.zero0 = self.vm.bytes_zeroed

    # --- pricing an operation in time ---------------------------------------------------------
    def _priced(self, cpu: int, start: int, lat: dict | None, kind: int, extra: int = 0) -> int:
        """The operation that just ran on ``cpu`` from ``start``: its price (plus ``extra``:
        an interrupt's entry and exit), the lock, its latency (into ``lat``), the interrupts it
        caused; returns its end.  ``kind``: which of the per-CPU sums it goes to (ALLOC,
        HANDLER, CALLS); an ALLOC one is also counted, and the warm-up may end with it."""
        pr = self.pricing
        cost, locked = pr.take()
        cost += self._base + extra
        mt = self.metrics
        if locked or self.giant:
            free_at = self.lock_free_at
            wait = free_at - start if start < free_at else 0
            if self.lock_owner != cpu and self.lock_owner != -1:
                cost += self._handoff
            self.lock_free_at = start + wait + (cost - pr.zero_cycles if self.unlocked_zero else cost)
            self.lock_owner = cpu
            mt.wait[cpu] += wait
            took = wait + cost
        else:
            took = cost
        end = start + took
        self.clock[cpu] = self.irq_ok[cpu] = end
        if lat is not None:
            lat[took] += 1
        if pr.shootdowns and pr.per_page:
            self._invalidate_others(cpu, end, pr.shootdowns)
        if self.pending:
            self._send_pending(end)
        if kind:
            (mt.alloc, mt.handler, mt.calls)[kind][cpu] += took
            return end
        mt.alloc[cpu] += took                    # an allocator operation: one more counted
        mt.nops = n = mt.nops + 1
        if n == mt.warmup:
            self._end_warmup(start)
        if not n & 63:
            mt.series.append((start, mt.fp, mt.live_req))
        return end

    def unpriced(self) -> None:
        """Drop what the counters moved since the last charge: an attempt that sleeps
        (``Deadlock``) undoes itself and is not priced; its retry after a free is."""
        self.pricing.drop()
        self.pending.clear()

    # --- interrupts ---------------------------------------------------------------------------
    def _ipi(self, src, dst, func, args):
        self.pending.append((dst, func, args, False))

    def _passive(self, src, dst, func, args):
        self.pending.append((dst, func, args, True))

    def _send_pending(self, end: int) -> None:
        at = end + self.costs.ipi_latency
        engine = self.engine
        queue, seq, arrive = engine.queue, engine._seq, self._arrive
        for msg in self.pending:
            heappush(queue, (at, URGENT, next(seq), arrive, msg))
        self.pending.clear()

    def _interrupt_start(self, dst: int, now: int) -> int:
        """When an interrupt arriving at ``now`` runs on ``dst``: at once unless dst is in an
        allocator operation or a handler (then right after it)."""
        start = self.irq_ok[dst]
        if start < now:
            start = now
        if self.zero_idle is not None and self.clock[dst] < start:
            self._idle(dst, self.clock[dst], start)
        return start

    def _arrive(self, msg: tuple) -> None:
        """An IPI message reaches ``dst``'s queue (docs/research/mechanisms.md sections 2, 3).
        A hardware one interrupts dst, unless an interrupt there has not finished by now:
        then that interrupt's drain loop runs it, and its IPI, latched by the APIC, costs one
        more (empty) interrupt after the drain, once per drain.  A new interrupt also runs
        the passive messages waiting in the queue.  A passive message interrupts nobody: it
        waits for the next drain, an interrupt or dst's next clock tick."""
        dst, func, args, passive = msg
        now = self.engine.now
        if self.drain and self.drain_end[dst] > now:    # the running drain takes it
            start, extra = max(self.drain_end[dst], self.irq_ok[dst]), 0
            if not passive and not self.latched[dst]:
                self.latched[dst] = True
                extra = self.costs.ipi_receive
                self.ipi_interrupts += 1
        elif passive:
            self.parked[dst].append((func, args))
            tick = (now // self.tick + 1) * self.tick
            if not self.tick_due[dst]:
                self.tick_due[dst] = True
                self.engine.schedule(tick, self._tick, dst, priority=URGENT)
            return
        else:
            start, extra = self._interrupt_start(dst, now), self.costs.ipi_receive
            self.latched[dst] = False
            self.ipi_interrupts += 1
        func(*args)
        self._handler(dst, start, extra, True)
        if self.parked[dst] and self.drain:
            self._run_parked(dst, self.drain_end[dst])
        if self.blocked:
            self._wake()

    def _tick(self, dst: int) -> None:
        """dst's clock interrupt (hz a second): its IPI queue is drained (the passive
        messages); the tick's own cost is not the allocator's."""
        self.tick_due[dst] = False
        if self.parked[dst]:
            if self.drain_end[dst] <= self.engine.now:  # a new drain: an IPI during it latches again
                self.latched[dst] = False
            self._run_parked(dst, self._interrupt_start(dst, self.engine.now))
            if self.blocked:
                self._wake()

    def _run_parked(self, dst: int, start: int) -> None:
        parked, self.parked[dst] = self.parked[dst], []
        for func, args in parked:
            self.passive_runs += 1
            func(*args)
            self._handler(dst, start, 0, True)
            start = self.drain_end[dst]

    def _handler(self, dst: int, start: int, extra: int, drain: bool) -> None:
        """Price a handler that ran on ``dst`` from ``start`` (``extra``: interrupt entry and
        exit, flushes); interruptible work it cut into ends later by as much.  ``drain``: an
        IPI-queue drain, which messages arriving before its end join."""
        clock = self.clock[dst]
        end = self._priced(dst, start, self.metrics.lat["ipi_handler"], HANDLER, extra)
        self.clock[dst] = (clock if clock > start else start) + (end - start)
        if drain:
            self.drain_end[dst] = end

    def _invalidate_others(self, cpu: int, end: int, n: int) -> None:
        """smp_invltlb, ``n`` times (one per page mapped or unmapped): every other CPU takes
        the invalidation interrupt each time (the sender's ICR spin spaces the IPIs further
        apart than a receiver's handler lasts, so the APIC merges none)."""
        self.tlb_ipis += n
        at = end + self.costs.ipi_latency
        for dst in range(self.ncpus):
            if dst != cpu:
                self.engine.schedule(at, self._tlb_arrive, (dst, n), priority=URGENT)

    def _tlb_arrive(self, msg: tuple) -> None:
        """``n`` invalidation interrupts reach ``dst`` at once, each run after the one before
        (one event for the n: they are consecutive in the event order, nothing runs between)."""
        dst, n = msg
        extra = self.costs.ipi_receive + self.costs.tlb_flush
        for _ in range(n):
            self.tlb_interrupts += 1
            self._handler(dst, self._interrupt_start(dst, self.engine.now), extra, False)

    def _idle(self, cpu: int, since: int, until: int) -> None:
        """``cpu`` was idle from ``since`` to ``until``: its idle loop zeroed free pages (none
        in a gap shorter than one page's zeroing)."""
        calls = (until - since) // self.page_cycles
        if calls:
            self.zero_idle(calls)

    # --- threads --------------------------------------------------------------------------------
    def add_thread(self, cpu: int, name: str, gen, at: int = 0) -> None:
        if not 0 <= cpu < self.ncpus:
            raise ValueError(f"thread {name!r} wants cpu {cpu}, machine has {self.ncpus}")
        t = _Thread(name, cpu, gen)
        ready = self._advance(t, None, at)
        if ready is not None:
            self.engine.schedule(ready, self._step, t)

    def _advance(self, t: _Thread, value, ready: int):
        """Send ``value`` to the thread and run what needs no event: work right after its
        operation (its CPU still free at ``ready``), ``idle``, ``read`` and ``write``.  Returns
        when the next operation is due (``t.op``), or None when the thread has ended."""
        send = t.send
        clock = self.clock
        cpu = t.cpu
        fold = not self.giant
        try:
            while True:
                op = send(value)
                code = op[0]
                value = None
                if code == WORK and fold and clock[cpu] == ready:
                    c = op[1]
                    ready += c
                    clock[cpu] = ready
                    self.metrics.work[cpu] += c
                elif code == IDLE:
                    ready += op[1]
                elif code == WRITE:
                    self.k.write(self._handle(t, op)[0], op[2])
                elif code == READ:
                    value = self.k.read(self._handle(t, op)[0], op[2])
                else:
                    t.op = op
                    return ready
        except StopIteration:
            return None
        except _MISUSE as e:
            if t.gen.gi_frame is not None:       # suspended at its yield: what it yielded failed
                self._blame(t, op, e)
            raise

    def _blame(self, t: _Thread, op, e: Exception) -> None:
        """Running the thread's ``op`` raised ``e``: if the workload is at fault (``op`` is no
        operation, or its handle is not live), a WorkloadError that names the workload, the
        thread and the operation; else return, and ``e`` goes on as it is (a backend's bug,
        a ``call``'s own ValueError)."""
        why = str(e) if isinstance(e, _NotLive) else malformed(op)
        if why is not None:
            raise WorkloadError(f"workload {self.workload!r}, thread {t.name!r} on cpu {t.cpu}: "
                                f"{describe(op)}: {why}") from None

    def _handle(self, t: _Thread, op: tuple) -> tuple:
        try:
            return self.handles[op[1]]
        except (KeyError, TypeError):
            raise self._not_live(op[1]) from None

    def _not_live(self, h) -> "_NotLive":
        if h.__class__ is int and 0 <= h < self.next_handle:
            return _NotLive(f"handle {h} is not live: freed already, or consumed by a realloc")
        return _NotLive(f"handle {h!r} was never returned by malloc")

    def _exec(self, t: _Thread) -> None:
        """The thread's operation is due now: run it, and the ones after it that are due
        before any other event."""
        engine = self.engine
        queue = engine.queue
        clock = self.clock
        cpu = t.cpu
        zero_idle, debug, mtypes = self.zero_idle, self.debug, self.mtypes
        while True:
            now = engine.now
            if clock[cpu] > now:
                engine.schedule(clock[cpu], self._step, t)
                return
            if zero_idle is not None and clock[cpu] < now:
                self._idle(cpu, clock[cpu], now)
            if debug:
                self.be.site_hint = f"thread {t.name} (cpu {cpu}) at cycle {now}"
            try:
                op = t.op
                code = op[0]
                if code == MALLOC:               # the common four, without a call to _do
                    result, end = self.malloc_at(cpu, now, op[1], mtypes.get(op[2]) or self._mtype(op[2]), op[3])
                elif code == FREE:
                    result, end = None, self.free_at(cpu, now, op[1])
                elif code == CACHE_ALLOC:
                    result, end = self.cache_alloc_at(cpu, now, op[1], op[2], op[3], op[4], op[5])
                elif code == WORK:               # after idle or a wait, or under giant: an event of its own
                    result, end = None, self._work(cpu, now, op[1])
                else:
                    result, end = self._do(t, now)
            except Deadlock as e:
                self.unpriced()
                t.waiting = f"{e} [{t.name} on cpu {cpu}]"
                self.blocked.append(t)
                return
            except _MISUSE as e:
                self._blame(t, t.op, e)
                raise
            if result is _BLOCK:
                return
            ready = self._advance(t, result, end)
            if ready is None:
                return
            if queue and queue[0][0] <= ready:
                heappush(queue, (ready, NORMAL, next(engine._seq), self._step, t))
                return
            engine.now = ready           # nothing else happens before: run it here

    def _do(self, t: _Thread, now: int):
        """The operations other than malloc, cache_alloc, free and work (which _exec runs itself)."""
        op = t.op
        code = op[0]
        cpu = t.cpu
        if code == PUT:
            q = op[1]
            waiting = self.waiters.get(id(q))
            if waiting:
                w = waiting.pop(0)
                self._resume(w, op[2], max(now, self.clock[w.cpu]))
            else:
                q.append(op[2])
            return None, now
        if code == GET:
            q = op[1]
            if q:
                return q.popleft(), now
            self.waiters.setdefault(id(q), []).append(t)
            return _BLOCK, now
        if code == REALLOC:
            return self._realloc(t, op, now)
        if code == CALL:
            result = op[1](self.k, *op[2])
            return result, self._priced(cpu, now, None, CALLS)
        raise ValueError(f"thread {t.name!r} yielded an unknown operation {op!r}")

    def _resume(self, t: _Thread, value, ready: int) -> None:
        ready = self._advance(t, value, ready)
        if ready is not None:
            self.engine.schedule(ready, self._step, t)

    def _work(self, cpu: int, now: int, cycles: int) -> int:
        """Work as an event: under giant it holds the lock (prices no counter); else it
        just occupies the CPU."""
        wait = 0
        if self.giant:
            wait = self.lock_free_at - now if self.lock_free_at > now else 0
            if self.lock_owner not in (cpu, -1):
                cycles += self._handoff
            self.lock_free_at = now + wait + cycles
            self.lock_owner = cpu
            self.metrics.wait[cpu] += wait
        self.clock[cpu] = end = now + wait + cycles
        self.metrics.work[cpu] += wait + cycles
        return end

    def _realloc(self, t: _Thread, op: tuple, now: int):
        _, h, size, flags = op
        cpu = t.cpu
        addr, mt = self._handle(t, op)[:2]
        if mt.__class__ is Cache:
            raise _NotLive(f"handle {h!r} is an object of cache {mt.name!r}: its size is the cache's")
        new = self.k.realloc(addr, size, mt, flags, cpu)
        if new is not None:
            _, _, old_size, old_usable = self.handles.pop(h)
            self.metrics.live_changed(now, -old_size, -old_usable)
            if new != addr and self.coherent:    # moved: the old block freed here
                self.chunk_cpu[addr] = cpu
        result = self._allocated(cpu, now, new, mt, size, flags, None, None, "realloc")
        if self.blocked:
            self._wake()
        return result

    # --- the allocator operations (threads and replay) --------------------------------------------
    def malloc_at(self, cpu: int, now: int, size: int, mt, flags: int, h=None):
        """One priced malloc on ``cpu`` at ``now``: (handle or None, end time).  ``h``: the
        handle to bind (replay uses its keys); None, the next number."""
        return self._allocated(cpu, now, self.k_malloc(size, mt, flags, cpu), mt, size, flags, h)

    def cache_alloc_at(self, cpu: int, now: int, name: str, size: int, flags: int, align: int = 0,
                       cache_flags: int = 0, h=None):
        """One priced cache_alloc from the cache ``name`` (created on first use, unpriced, as
        at boot): counted and timed as a malloc.  Its handle's type slot holds the Cache,
        so that free_at gives the object back with cache_free."""
        try:
            cache, slot = self.caches[name]
        except KeyError:
            cache = self.k.caches.get(name) or self.k.cache_create(name, size, align, cache_flags)
            slot = self.k.backend.cache_row(cache)["slab_size"]
            self.caches[name] = cache, slot
            self.pricing.drop()
        return self._allocated(cpu, now, self.k.cache_alloc(cache, flags, cpu), cache, size, flags, h, slot)

    def _allocated(self, cpu: int, now: int, addr, owner, size: int, flags: int, h, usable=None, op="malloc"):
        """A malloc, cache_alloc or realloc (``op``) that ran on ``cpu`` from ``now`` returned
        ``addr``: counted, its chunk's line, its handle, priced; returns (handle or None, end).
        The handle is ``h`` (replay uses its keys) or the next number; ``usable``, what the
        block holds when it is not malloc's (a cache's slot)."""
        ops = self.ops
        ops[op] += 1
        if addr is None:
            ops["failed"] += 1
            self.metrics.live_changed(now)
            return None, self._priced(cpu, now, self._lat_m, ALLOC)
        if self.coherent and self.chunk_cpu.pop(addr, cpu) != cpu:
            self.m.lines.misses += 1             # the chunk's line is in the freeing CPU's cache
        if h is None:
            h = self.next_handle
            self.next_handle = h + 1
        if usable is None:
            usable = self.k_usable_size(addr)
        self.handles[h] = (addr, owner, size, usable)
        m = self.metrics
        m.live_changed(now, size, usable)        # the state the last operation left, up to now
        if flags & ZERO:
            m.zero_req += size
        return h, self._priced(cpu, now, self._lat_m, ALLOC)

    def free_at(self, cpu: int, now: int, h) -> int:
        """One priced free of handle ``h`` (a cache's object goes back with cache_free);
        wakes sleepers.  Returns the end time."""
        try:
            addr, mt, size, usable = self.handles.pop(h)
        except (KeyError, TypeError):
            raise self._not_live(h) from None
        self.metrics.live_changed(now, -size, -usable)
        if mt.__class__ is Cache:
            self.k.cache_free(mt, addr, cpu)
        else:
            self.k_free(addr, mt, cpu)
        if self.coherent:
            self.chunk_cpu[addr] = cpu
        self.ops["free"] += 1
        end = self._priced(cpu, now, self._lat_f, ALLOC)
        if self.blocked:
            self._wake()
        return end

    def _mtype(self, tname: str):
        mt = self.mtypes.get(tname)
        if mt is None:
            mt = self.mtypes[tname] = self.k.malloc_type(tname)
        return mt

    def _wake(self) -> None:
        """Memory was freed: sleeping mallocs retry (wakeup(type) / vm_wait wakeups)."""
        if self.blocked:
            woken, self.blocked = self.blocked, []
            for t in woken:
                t.waiting = None
                self.engine.schedule(max(self.engine.now, self.clock[t.cpu]), self._step, t)

    def run(self) -> None:
        self.engine.run()
        stuck = self.blocked + [t for ts in self.waiters.values() for t in ts]
        if stuck:
            why = [t.waiting for t in self.blocked]
            why += [f"{t.name} on cpu {t.cpu} waits on an empty queue" for ts in self.waiters.values() for t in ts]
            raise Deadlock("deadlock: " + "; ".join(why),
                           channel=[t.name for t in stuck])

    # --- phases and the record ----------------------------------------------------------------------
    def _totals(self) -> dict:
        """The running totals a phase reports differences of."""
        vm, m = self.vm, self.m
        return {"ops": dict(self.ops), "counters": self._counters(), "bytes_zeroed": vm.bytes_zeroed,
                "ipis": m.ipis, "tlb_shootdowns": vm.tlb_shootdowns, "clock": list(self.clock),
                "lock_wait": sum(self.metrics.wait)}

    def _counters(self) -> dict:
        c = self.be.counters()
        m = self.m
        c.update({"coherence_misses": m.lines.misses, "ipis": m.ipis,
                  "ipi_interrupts": self.ipi_interrupts, "passive_ipis": m.passive_ipis,
                  "tlb_shootdowns": self.vm.tlb_shootdowns, "tlb_ipis": self.tlb_ipis,
                  "tlb_interrupts": self.tlb_interrupts,
                  "pages_prezeroed": m.pages_prezeroed})
        return c

    def _end_warmup(self, now: int) -> None:
        mt = self.metrics
        busy = sum(sum(x) for x in (mt.alloc, mt.handler, mt.calls, mt.work))
        warm = {"ops": mt.nops, "cycles": busy, "peak_footprint_bytes": mt.peak_fp,
                "bytes_zeroed": self.vm.bytes_zeroed - self.zero0}
        mt.end_warmup(now, self._totals(), warm)
        self._lat_m, self._lat_f = mt.lat["malloc"], mt.lat["free"]

    def warmup_record(self) -> dict:
        mt = self.metrics
        if mt.warm is not None:
            return dict(mt.warm)
        return {"ops": 0, "cycles": 0, "peak_footprint_bytes": mt.boot_fp, "bytes_zeroed": 0}

    def _since(self, key):
        snap = self.metrics.snap
        return 0 if snap is None else snap[key]

    def ops_record(self) -> dict:
        snap = self.metrics.snap
        return {k: v - (snap["ops"][k] if snap else 0) for k, v in self.ops.items()}

    def counters_record(self) -> dict:
        snap = self.metrics.snap
        now = self._counters()
        return {k: v - (snap["counters"].get(k, 0) if snap else 0) for k, v in now.items()}

    def cpus_record(self) -> list:
        mt = self.metrics
        t0 = mt.t0
        end = max(self.clock)
        out = []
        for c in range(self.ncpus):
            busy = mt.alloc[c] + mt.handler[c] + mt.calls[c] + mt.work[c]
            out.append({"cpu": c, "busy_cycles": busy, "allocator_cycles": mt.alloc[c],
                        "lock_wait_cycles": mt.wait[c], "ipi_handler_cycles": mt.handler[c],
                        "idle_cycles": max(0, end - t0 - busy)})
        return out

    def sim_record(self) -> dict:
        mt = self.metrics
        makespan = max(self.clock) - mt.t0
        ops = self.ops_record()
        nops = ops["malloc"] + ops["free"] + ops["realloc"]
        busy = sum(sum(x) for x in (mt.alloc, mt.handler, mt.calls, mt.work))
        allocator = sum(mt.alloc) + sum(mt.handler)
        return {
            "cycles": busy,
            "makespan_cycles": makespan,
            "throughput_ops_per_mcycle": round(nops * 1e6 / makespan, 3) if makespan else 0.0,
            "cycles_per_op": round(allocator / nops, 3) if nops else None,
            "allocator_share": round(allocator / busy, 4) if busy else None,
            "lock_wait_cycles": sum(mt.wait),
            "ipis": self.m.ipis - self._since("ipis"),
            "tlb_shootdowns": self.vm.tlb_shootdowns - self._since("tlb_shootdowns"),
        }

    def memory_record(self) -> dict:
        return self.metrics.memory_record(self.k.footprint(), max(self.clock))

    def zeroing_record(self) -> dict:
        return {"bytes_zeroed": self.vm.bytes_zeroed - (self._since("bytes_zeroed") if self.metrics.snap
                                                        else self.zero0),
                "bytes_zero_requested": self.metrics.zero_req,
                "pages_prezeroed": self.m.pages_prezeroed - (self.metrics.snap["counters"]["pages_prezeroed"]
                                                             if self.metrics.snap else 0)}

    def series_record(self) -> dict:
        pts = self.metrics.series
        if len(pts) > SERIES_POINTS:
            step = len(pts) / SERIES_POINTS
            pts = [pts[int(i * step)] for i in range(SERIES_POINTS)]
        return {"t": [p[0] for p in pts], "footprint": [p[1] for p in pts], "requested": [p[2] for p in pts]}


ALLOC, HANDLER, CALLS = range(3)      # the per-CPU sum an operation goes to; ALLOC is counted
_BLOCK = object()


class _NotLive(LookupError):
    """A handle the thread cannot use there (not live; a cache's object given to realloc); the
    thread that used it is blamed (``Simulator._blame``)."""


# What running a malformed operation raises (indexing a non-tuple, a wrong argument's type).
_MISUSE = (LookupError, TypeError, ValueError, AttributeError)


def boot_for(spec: RunSpec):
    return boot(spec.backend, ncpus=spec.ncpus, physmem=spec.physmem, seed=spec.seed,
                arch=spec.arch, **spec.options)


def check_warmup(value, what: str = "warmup"):
    """A warm-up length: None (the default) or an int from 0."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{what} must be a number of allocator operations (an integer from 0), got {value!r}")
    return value


def record(spec: RunSpec, sim: Simulator, extra: dict, wall: float, panic: str | None) -> dict:
    """The JSON record of one run (keys are a public contract; see docs/comparing.md)."""
    k = sim.k
    return {
        "backend": spec.backend,
        "workload": spec.workload,
        "ncpus": spec.ncpus,
        "seed": spec.seed,
        "variant": spec.variant or spec.backend,
        "workload_variant": spec.workload_variant or spec.workload,
        "physmem": k.machine.physmem,
        "arch": spec.arch,
        "params": extra.pop("params", dict(spec.params)),
        "options": dict(k.options),
        "costs": {"preset": spec.costs.get("preset", "2003"), **attrs.asdict(sim.costs)},
        "machine": dict(sim.mech),
        "run": {"warmup": sim.metrics.warmup},
        "warmup": sim.warmup_record(),
        "ops": sim.ops_record(),
        "sim": sim.sim_record(),
        "latency": sim.metrics.latency_record(),
        "cpus": sim.cpus_record(),
        "memory": sim.memory_record(),
        "zeroing": sim.zeroing_record(),
        "counters": sim.counters_record(),
        "types": [{"name": n, **k.type_counters(t)} for n, t in sorted(k.types.items())],
        "classes": [c for c in k.backend.classes() if c.get("slabs") or c.get("inuse")],
        "caches": [k.backend.cache_row(c) for c in k.caches.values()],
        "series": sim.series_record(),
        **extra,
        "panic": panic,
        "version": __version__,
        "provenance": provenance(spec.backend, spec.workload),
        "wall_seconds": round(wall, 3),
    }


def run_one(spec: RunSpec) -> dict:
    """Run one workload on one backend; returns its record."""
    t0 = _time.perf_counter()
    cls = plugins.workload_class(spec.workload)
    params = resolve_params(cls, spec.params)
    costs = CostModel.from_config(spec.costs)
    warmup = check_warmup(spec.warmup)
    if warmup is None:
        warmup = workload_warmup(cls, params, spec.ncpus)
    k = boot_for(spec)
    sim = Simulator(k, costs, warmup, spec.workload)
    ctx = Context(spec.workload, params, spec.ncpus, spec.seed)
    for cpu, name, gen in cls().threads(ctx):
        sim.add_thread(cpu, name, gen)
    panic = None
    try:
        sim.run()
    except (KernelPanic, Deadlock) as e:        # a cell's own end: recorded, the grid goes on
        panic = str(e)
    if panic is None and warmup and sim.metrics.warm is None:
        raise ValueError(f"warmup of {warmup} operations covers the whole run of {spec.workload!r} "
                         f"({sim.metrics.nops} allocator operations): give a smaller --warmup")
    extra = {"params": params, "workload_counts": dict(sorted(ctx.counts.items())), "dma": dma_stats(k)}
    rec = record(spec, sim, extra, _time.perf_counter() - t0, panic)
    plugins.plugin_manager().hook.kalloc_run_end(record=rec)
    return rec


def workload_warmup(cls, params: dict, ncpus: int) -> int:
    """The workload's own warm-up (``warmup_ops``; 0 for a class without one)."""
    rule = getattr(cls, "warmup_ops", None)
    n = 0 if rule is None else rule(params, ncpus)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"workload {cls.NAME!r}: warmup_ops gave {n!r}, not a number of operations")
    return n


# --- grids (executed by kalloc.executors) -------------------------------------------

SUMMARY_METRICS = (
    ("sim", "throughput_ops_per_mcycle"),
    ("sim", "makespan_cycles"),
    ("sim", "lock_wait_cycles"),
    ("sim", "ipis"),
    ("sim", "cycles_per_op"),
    ("sim", "allocator_share"),
    ("latency", "malloc", "p99"),
    ("latency", "malloc", "max"),
    ("memory", "peak_footprint_bytes"),
    ("memory", "peak_growth_bytes"),
    ("memory", "overhead_ratio"),
    ("zeroing", "bytes_zeroed"),
    ("ops", "failed"),
)


def metric_key(path: tuple) -> str:
    """A summary row's name for a metric: its last key, with latency's kind in front."""
    return "_".join(path[1:]) if path[0] == "latency" else path[-1]


def _dig(rec: dict, path: tuple):
    for key in path:
        rec = rec[key]
    return rec


def labels(r: dict) -> tuple:
    """(workload label, backend label) of a record or summary row: its variants (a record
    written before variants, or a row made by hand, has only the names)."""
    return r.get("workload_variant", r["workload"]), r.get("variant", r["backend"])


def summarize(records: list) -> list:
    """Group repeated runs (same backend and workload variants, ncpus; different seeds) into
    one row each with mean, stdev, min and max of the SUMMARY_METRICS."""
    groups: dict = {}
    for r in records:
        wl, be = labels(r)
        groups.setdefault((wl, r["ncpus"], be), []).append(r)
    rows = []
    for (wl, n, be), rs in groups.items():
        row = {"workload": rs[0]["workload"], "workload_variant": wl, "ncpus": n, "backend": rs[0]["backend"],
               "variant": be, "runs": len(rs),
               "seeds": [r["seed"] for r in rs], "panics": sum(1 for r in rs if r["panic"]),
               "giant": any(r.get("machine", {}).get("giant") for r in rs),
               "replay": any("trace" in r for r in rs)}
        for path in SUMMARY_METRICS:
            vals = [v for v in (_dig(r, path) for r in rs) if v is not None]
            if vals:
                row[metric_key(path)] = {"mean": statistics.fmean(vals),
                                         "stdev": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                                         "min": min(vals), "max": max(vals)}
        rows.append(row)
    return rows


def specs_for(backends, workloads, ncpus_list, seeds, **common) -> list:
    """The grid in a fixed order: workload, ncpus, seed, backend (backends side by side)."""
    return [attrs.evolve(RunSpec(b, w, n, s), **common)
            for w in workloads for n in ncpus_list for s in seeds for b in backends]
