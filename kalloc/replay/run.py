"""Replay a real kernel allocation trace on any backend, priced in virtual time.

Deterministic: the same trace, backend, options and CPU count give the same record.

    trace lines --parse--> events --rules--> ops (cpu, MALLOC|FREE, key, ..., ts) --> Simulator
                                                                                 +-> Simulator ...
    |------- reader process (pipeline) -------|  batches of ops   |--- this process ---|

The trace is read once, whatever the number of backends: each batch of operations goes to
one driver per backend in turn (``replay_backends``), so standard input serves them all and
each record is the one its backend gets alone.

With two CPUs or more the reading, parsing and rules run in a forked child that sends the
operations in batches of ``BATCH`` through a pipe, so they overlap with the simulation;
the operations and their order are the same either way, and so is the record.  Errors
come back from the child as the same exceptions (a damaged .xz/.gz/.zst file is a
ValueError that names it), and a panic leaves the counts of the whole trace in both modes.

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

import gzip
import itertools
import lzma
import marshal
import multiprocessing
import os
import signal
import threading
import time as _time
import zlib
from collections import deque

from kalloc.costs import CostModel
from kalloc.errors import Deadlock, KernelPanic
from kalloc.harness import RunSpec, Simulator, boot_for, check_warmup, record
from kalloc.malloc import MAX_CPUS
from kalloc.provenance import sha256
from kalloc.replay.parse import TraceParser, open_trace, zstandard
from kalloc.replay.rules import CACHE_ALLOC, MALLOC, TraceStats, replay_ops

LOOKAHEAD = 10000
BATCH = 4096            # operations per message from the reader process
try:
    _FORK = multiprocessing.get_context("fork")
except ValueError:      # no fork on this platform: parse in the same process
    _FORK = None
PIPELINE_OK = _FORK is not None and (os.cpu_count() or 1) >= 2


def replay_trace(path, backend: str = "slab", ncpus: int | None = None, physmem="64M", arch="i386",
                 options: dict | None = None, costs: dict | None = None, seed: int = 0,
                 progress=None, pipeline: bool | None = None, warmup: int = 0) -> dict:
    """Replay the trace at ``path`` ("-" for stdin) on one backend; returns the run record.

    ``pipeline``: read and parse the trace in a second process while this one simulates
    (None: when the machine has two CPUs or more and this process can fork safely, that is
    runs no other thread).  The record is the same."""
    return replay_backends(path, [(backend, options)], ncpus, physmem, arch, costs, seed, progress, pipeline,
                           warmup)[0]


def replay_backends(path, runs, ncpus: int | None = None, physmem="64M", arch="i386",
                    costs: dict | None = None, seed: int = 0, progress=None,
                    pipeline: bool | None = None, warmup: int = 0) -> list:
    """Replay the trace at ``path`` on several backends in one pass over it: ``runs`` lists
    (backend name, options or None), or (backend name, options, variant label); returns their
    records in that order.

    The trace is read and parsed once (standard input can only be read once) and every
    simulator is fed the same batches of operations, so each record is the one
    ``replay_trace`` gives for that backend alone; a backend that panics stops there and the
    others go on.  ``progress(n)``, if given, is called after each batch with the number of
    operations read.  ``wall_seconds`` of a record: the reading's time plus that backend's
    own boot and simulation.  ``warmup``: trace operations replayed before measuring
    starts (default 0: a trace has no warm-up of its own)."""
    t0 = _time.perf_counter()
    model = CostModel.from_config(costs or {})
    warmup = check_warmup(warmup) or 0
    if pipeline is None:
        pipeline = PIPELINE_OK and threading.active_count() == 1
    lines = open_trace(path)                     # here, so that a bad path is reported here
    source = _ChildSource(lines, path) if pipeline and _FORK else _LocalSource(lines)
    try:
        guess, ts0 = source.start()
        if ncpus is None:
            if guess > MAX_CPUS:            # a damaged [cpu] column, or a machine too big
                raise ValueError(f"{path}: an event on CPU {guess - 1} in the first {LOOKAHEAD} events, more "
                                 f"than the {MAX_CPUS} CPUs kalloc simulates: replay it with a CPU count N "
                                 f"(kalloc replay --ncpus N), and events on other CPUs run on cpu % N")
            ncpus = guess
        replays = [_Replay(RunSpec(backend, f"trace:{path}", ncpus, seed, physmem, arch, dict(options or {}), {},
                                   dict(costs or {}), warmup, *variant), model, ts0)
                   for backend, options, *variant in runs]
        n = 0
        for batch in source.batches:
            for r in replays:
                r.feed(batch)
            n += len(batch)
            if progress:
                progress(n)
        for r in replays:
            r.feed(None)                          # the end of the trace
        counts = source.finish()
        if not counts["events"]:
            raise ValueError(_no_events(path, counts))
    except UNREADABLE as e:
        raise _unreadable(path, e) from None
    finally:
        source.close()
    reading = _time.perf_counter() - t0 - sum(r.seconds for r in replays)
    digest = sha256(path)
    return [r.record(counts, path, digest, reading) for r in replays]


def check_trace(path) -> None:
    """Open the trace at ``path`` and read its start, raising what replay_backends would
    (a missing file, a directory, a damaged header): a command checks it before any work.
    Standard input ("-") is left unread."""
    if os.fspath(path) == "-":
        return
    lines = open_trace(path)
    try:
        lines.readline(1)
    except UNREADABLE as e:
        raise _unreadable(path, e) from None
    finally:
        lines.close()


class _Replay:
    """One backend's simulator, fed batches of operations by its driver (_drive)."""

    def __init__(self, spec: RunSpec, model: CostModel, ts0: float):
        t = _time.perf_counter()
        self.spec = spec
        self.sim = Simulator(boot_for(spec), model, spec.warmup)
        self.extra = {"would_sleep": 0, "folded_cpu_events": 0}
        self.kernel_slab: dict = {}           # cache name -> its slot in the traced kernel
        self.panic = None
        self.driver = _drive(self.sim, ts0, model.clock_hz, spec.ncpus, self.extra, self.kernel_slab)
        next(self.driver)
        self.seconds = _time.perf_counter() - t

    def feed(self, batch) -> None:
        """Replay a batch of operations, or end the trace (None); after a panic, nothing."""
        if self.panic is not None:
            return
        t = _time.perf_counter()
        try:
            self.driver.send(batch)
        except StopIteration:                     # the end: the last IPIs have run
            pass
        except KernelPanic as e:
            self.panic = str(e)
        self.seconds += _time.perf_counter() - t

    def record(self, counts: dict, path, digest: str | None, reading: float) -> dict:
        trace = {**counts, **self.extra, "path": str(path), "sha256": digest}
        rec = record(self.spec, self.sim, {"params": {}, "trace": trace}, reading + self.seconds, self.panic)
        for row in rec["caches"]:                 # the traced kernel's slot beside the backend's
            row["kernel_slab_size"] = self.kernel_slab.get(row["name"])
        return rec


class _LocalSource:
    """Parse and apply the rules in this process, as the simulator asks for operations."""

    def __init__(self, lines):
        self.lines = lines
        self.parser, self.stats = TraceParser(), TraceStats()

    def start(self) -> tuple[int, float]:
        """(ncpus guess, first timestamp) from a lookahead of LOOKAHEAD events."""
        events = self.parser.events(self.lines)
        head = list(itertools.islice(events, LOOKAHEAD))
        ops = self.ops = replay_ops(itertools.chain(head, events), self.stats)
        self.batches = iter(lambda: list(itertools.islice(ops, BATCH)), [])
        return max((e[1] for e in head), default=0) + 1, head[0][0] if head else 0.0

    def finish(self) -> dict:
        """The counts of the whole trace (read to its end if it was not)."""
        deque(self.ops, maxlen=0)
        self.stats.take_parser_counts(self.parser)
        return self.stats.as_dict()

    def close(self) -> None:
        self.lines.close()


class _ChildSource:
    """The same, in a forked child that sends the operations in batches through a pipe
    (marshal: the fastest serialisation of tuples of ints, floats and strings).  The
    simulation and the parsing then run on two CPUs; the operations, their order and the
    counts are those of _LocalSource, so the record is too."""

    def __init__(self, lines, path):
        self.lines = lines
        self.conn, child = multiprocessing.Pipe(duplex=False)
        self.proc = _FORK.Process(target=_produce, args=(lines, path, child), daemon=True)
        # Ctrl-C is the parent's to handle (it stops the child): blocked across the fork,
        # ignored by the child before it unblocks it, so the reader never prints a traceback.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child.close()
        self.counts = None

    def _recv(self):
        try:
            kind, payload = marshal.loads(self.conn.recv_bytes())
        except EOFError:
            raise RuntimeError("the trace reader process died") from None
        if kind == "error":
            raise _ERRORS.get(payload[0], RuntimeError)(payload[1])
        return kind, payload

    def start(self) -> tuple[int, float]:
        self.batches = self._batches()
        return self._recv()[1]

    def _batches(self):
        recv = self._recv
        while True:
            kind, payload = recv()
            if kind != "ops":
                self.counts = payload
                return
            yield payload

    def finish(self) -> dict:
        deque(self.batches, maxlen=0)
        return self.counts

    def close(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join()
        self.conn.close()
        self.lines.close()


def _produce(lines, path, conn) -> None:
    """The child of _ChildSource: ("start", (ncpus guess, ts0)), ("ops", [op, ...]) ...,
    ("end", counts), or ("error", (exception class name, message))."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        source = _LocalSource(lines)
        conn.send_bytes(marshal.dumps(("start", source.start())))
        for batch in source.batches:
            conn.send_bytes(marshal.dumps(("ops", batch)))
        conn.send_bytes(marshal.dumps(("end", source.finish())))
    except Exception as e:   # noqa: BLE001 -- reported to the parent, which raises it
        if isinstance(e, UNREADABLE):
            e = _unreadable(path, e)
        conn.send_bytes(marshal.dumps(("error", (type(e).__name__, str(e)))))
    finally:
        conn.close()


# What a damaged compressed file raises while it is read.
UNREADABLE = (lzma.LZMAError, zlib.error, EOFError, gzip.BadGzipFile) + ((zstandard.ZstdError,) if zstandard else ())
_ERRORS = {e.__name__: e for e in (ValueError, OSError, FileNotFoundError, UnicodeError)}


def _no_events(path, counts: dict) -> str:
    """Why a trace gave nothing to replay: not a kmem trace, or every kmem line damaged."""
    why = f"{path}: no kmem event to replay ({counts['skipped']} lines skipped, {counts['unparsed']} unparsed"
    samples = counts["unparsed_samples"]
    if samples:
        lineno, text = samples[0]
        why += f"; line {lineno}: {text.strip()[:100]!r}"
    return why + ")"


def _unreadable(path, e: Exception) -> ValueError:
    return ValueError(f"{path}: corrupt or truncated trace ({e})")


def _drive(sim: Simulator, ts0: float, hz: int, ncpus: int, extra: dict, kernel_slab: dict):
    """The driver of one simulator, a generator: send it each batch of operations in
    turn, then None at the end of the trace.  Issues each operation at its trace time on
    its CPU (see the module docstring), through the simulator's ``malloc_at``,
    ``cache_alloc_at`` and ``free_at``, as threads' operations go.  ``kernel_slab`` gets each
    cache's slot size in the traced kernel (bytes_alloc at first sight).

    NOTE: the inner loop runs once per operation of traces of millions of lines, so it
    binds what it uses to locals.  A replay has no threads, so no free has sleepers to wake."""
    handles = sim.handles  # the replay keys are the harness handles
    mtypes, new_mtype = sim.mtypes, sim._mtype
    malloc_at, free_at, cache_alloc_at = sim.malloc_at, sim.free_at, sim.cache_alloc_at
    zero_idle = sim.zero_idle
    engine = sim.engine
    queue, clock = engine.queue, sim.clock
    folded = 0
    while (batch := (yield)) is not None:
        for op in batch:
            cpu = op[0]
            if cpu >= ncpus:
                cpu %= ncpus
                folded += 1
            now = int((op[-1] - ts0) * hz)
            if now < engine.now:
                now = engine.now
            if queue:
                engine.run(until=now)   # IPI handlers due by now
            if now < clock[cpu]:
                now = clock[cpu]
            elif zero_idle is not None and now > clock[cpu]:
                sim._idle(cpu, clock[cpu], now)
            kind = op[1]
            if kind == CACHE_ALLOC:
                _, _, key, size, flags, tname, alloc, _ = op
                if tname not in kernel_slab:
                    kernel_slab[tname] = alloc
                try:
                    cache_alloc_at(cpu, now, tname, size, flags, 0, 0, key)
                except Deadlock:
                    sim.unpriced()
                    extra["would_sleep"] += 1
                    sim.ops["failed"] += 1
            elif kind == MALLOC:
                _, _, key, size, flags, tname, _ = op
                mt = mtypes.get(tname) or new_mtype(tname)
                try:
                    malloc_at(cpu, now, size, mt, flags, key)
                except Deadlock:
                    sim.unpriced()
                    extra["would_sleep"] += 1
                    sim.ops["failed"] += 1
            elif op[2] in handles:                # not if its malloc failed
                free_at(cpu, now, op[2])
        extra["folded_cpu_events"] = folded
    engine.run()
