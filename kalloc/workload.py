"""Driver workloads: kernel threads as generators that yield allocator operations.

A workload models a driver: its kernel threads and interrupt handlers, each pinned to a
CPU, each a Python generator that yields *operations* and receives their results::

    def rx_interrupt(self, ctx, cpu):            # one thread
        rng = ctx.rng("rx")
        for _ in range(ctx.params["packets"]):
            h = yield malloc(2048, "mbuf", M_NOWAIT)   # -> a handle, or None on failure
            if h is None:
                ctx.count("drops"); continue
            yield put(ctx.queue("rxq"), h)             # hand it to the protocol thread
            yield work(rng.randint(500, 1500))         # non-allocator work, in cycles

Workloads never see addresses: ``malloc`` gives back an opaque *handle* that the
harness maps to whatever the backend returned, so every backend sees the same operation
stream for the same seed (it differs only where an allocation fails and the driver reacts,
as the real driver would).  Randomness comes only from ``ctx.rng(name)``: a
``random.Random`` seeded from (seed, workload, name), independent of the backend and of
the order threads run in.

Operations (plain tuples: the harness dispatches on the first element):

    malloc(size, type, flags=M_WAITOK) -> handle | None
    cache_alloc(cache, size, flags=M_WAITOK, align=0, cache_flags=0) -> handle | None
                                                             (an object of the kernel's cache
                                                              of that name, created on first use
                                                              with size, align and SLAB_* flags)
    free(handle)                                             (malloc'd or a cache's object)
    realloc(handle, size, flags=M_WAITOK) -> handle | None   (the old handle is consumed)
    write(handle, data)                                      (bytes into the allocation)
    read(handle, n) -> bytes
    work(cycles)                                             (time spent outside the allocator)
    idle(cycles)                                             (off the CPU: waiting, the CPU idle)
    put(queue, item) / get(queue) -> item                    (hand-off between threads;
                                                              get blocks until an item is there)
    call(func, *args) -> func(kernel, *args)                 (a kernel service, e.g. DMA)

Yielding anything else, or a handle that is not live, is the workload's bug: the harness
raises ``WorkloadError`` naming the workload, the thread and the operation (``describe``),
having found out what was wrong (``malformed``) only once running the operation raised.

A workload class has ``NAME``, ``DESCRIPTION`` (one line), ``PARAMS`` (defaults; a
value's type is the parameter's type), and ``threads(ctx)`` returning
``[(cpu, name, generator), ...]``; optionally ``LIMITS`` (``{param: (lo, hi)}``, inclusive,
``hi`` None for no upper bound; a number without one must not be negative) and
``check_params(params)`` for rules between parameters, and ``warmup_ops(params, ncpus)``
(a static method: the allocator operations before measuring starts; ``Workload.warmup_ops``
defines it).  ``resolve_params`` applies them
(and rejects inf and nan) before anything runs.  It registers through the
``kalloc_workloads`` hook, the same for kalloc's own workloads (kalloc_plugins) and for
third parties; see docs/workloads.md.
"""

from __future__ import annotations

import math
import random
import reprlib
from collections import deque

from kalloc.errors import expected
from kalloc.flags import flag_names, plain_flags

MALLOC, FREE, REALLOC, WRITE, READ, WORK, PUT, GET, CALL, IDLE, CACHE_ALLOC = range(11)
NAMES = ("malloc", "free", "realloc", "write", "read", "work", "put", "get", "call", "idle", "cache_alloc")
ARITY = (4, 2, 4, 3, 3, 2, 3, 2, 3, 2, 6)     # the length of each operation's tuple


def malloc(size: int, type_name: str, flags=0x2) -> tuple:
    return (MALLOC, size, type_name, plain_flags(flags))


def cache_alloc(cache: str, size: int, flags=0x2, align: int = 0, cache_flags: int = 0) -> tuple:
    return (CACHE_ALLOC, cache, size, plain_flags(flags), align, cache_flags)


def free(handle) -> tuple:
    return (FREE, handle)


def realloc(handle, size: int, flags=0x2) -> tuple:
    return (REALLOC, handle, size, plain_flags(flags))


def write(handle, data: bytes) -> tuple:
    return (WRITE, handle, bytes(data))


def read(handle, n: int) -> tuple:
    return (READ, handle, n)


def work(cycles: int) -> tuple:
    return (WORK, int(cycles))


def idle(cycles: int) -> tuple:
    """The thread is off its CPU for this many cycles (waiting for input, a timer, the
    device): the CPU is idle unless another thread or an interrupt runs there."""
    return (IDLE, int(cycles))


def put(queue, item) -> tuple:
    return (PUT, queue, item)


def get(queue) -> tuple:
    return (GET, queue)


def call(func, *args) -> tuple:
    """Run func(kernel, *args) on this thread's CPU and send back its result (DMA and
    other kernel services a driver uses besides malloc; priced by the counters it moves)."""
    return (CALL, func, args)


def describe(op) -> str:
    """An operation as the workload wrote it (``free(3)``, ``write(3, <64 bytes>)``), for
    error messages; anything else as its repr."""
    if not _is_op(op):
        return reprlib.repr(op)
    args = [f"<{len(a)} bytes>" if isinstance(a, bytes) else getattr(a, "__name__", None) or reprlib.repr(a)
            for a in op[1:]]
    if op[0] in (MALLOC, REALLOC):
        args[-1] = flag_names(op[-1])
    elif op[0] == CACHE_ALLOC:
        args[2] = flag_names(op[3])
    return f"{NAMES[op[0]]}({', '.join(args)})"


def malformed(op) -> str | None:
    """Why ``op`` is no operation the harness can run, or None.  Slow: the harness asks it
    only when running ``op`` raised, to tell a workload's bug from anyone else's."""
    if not _is_op(op):
        return ("not an operation: yield what kalloc.workload's malloc(), cache_alloc(), free(), realloc(), "
                "write(), read(), work(), idle(), put(), get() or call() return")
    code = op[0]
    size = op[1] if code == MALLOC else op[2] if code in (REALLOC, READ, CACHE_ALLOC) else 0
    if size.__class__ is not int or size < 0:
        return f"the size must be an integer from 0, not {size!r}"
    if code in (MALLOC, CACHE_ALLOC) and not (isinstance(op[1 if code == CACHE_ALLOC else 2], str)
                                              and op[1 if code == CACHE_ALLOC else 2]):
        what = "cache" if code == CACHE_ALLOC else "malloc type"
        return f"the {what} must be a name (a non-empty string), not {op[1 if code == CACHE_ALLOC else 2]!r}"
    if code in (PUT, GET) and not isinstance(op[1], deque):
        return f"the queue must be one of ctx.queue(name), not {op[1]!r}"
    if code == CALL and not callable(op[1]):
        return f"{op[1]!r} is not callable"
    return None


def _is_op(op) -> bool:
    return (op.__class__ is tuple and len(op) > 0 and op[0].__class__ is int and 0 <= op[0] < len(NAMES)
            and len(op) == ARITY[op[0]])


class Context:
    """What a workload's threads get: parameters, CPU count, seeded RNGs, queues, counters."""

    __slots__ = ("params", "ncpus", "seed", "workload", "queues", "counts")

    def __init__(self, workload: str, params: dict, ncpus: int, seed: int):
        self.workload = workload
        self.params = params
        self.ncpus = ncpus
        self.seed = seed
        self.queues: dict = {}
        self.counts: dict = {}

    def rng(self, name) -> random.Random:
        return random.Random(f"{self.seed}:{self.workload}:{name}")

    def queue(self, name):
        """A named FIFO shared by threads (created on first use)."""
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = deque()
        return q

    def count(self, name: str, n: int = 1) -> None:
        """A workload-level counter reported under ``workload_counts`` (e.g. drops)."""
        self.counts[name] = self.counts.get(name, 0) + n


class Workload:
    """Base class for workloads (optional: any class with the same attributes works)."""

    NAME = ""
    DESCRIPTION = ""
    PARAMS: dict = {}
    LIMITS: dict = {}

    @staticmethod
    def check_params(params: dict) -> None:
        """Rules between the resolved ``params`` (min <= max, ...): raise ValueError naming
        the parameter; ``resolve_params`` adds the workload's name."""

    @staticmethod
    def warmup_ops(params: dict, ncpus: int) -> int:
        """The number of allocator operations (malloc, free and realloc, counted over all CPUs,
        in the order the harness executes them) that run before measuring starts, for the
        resolved ``params`` on ``ncpus`` CPUs.  The harness uses it when the user gives no
        ``--warmup``.  A workload sets it long enough that the measured phase is past the
        creation of its first zones and past the fill of its live set, and states its rule in
        its docstring.  The default, 0, measures from the first operation."""
        return 0

    def threads(self, ctx: Context) -> list:
        raise NotImplementedError


def resolve_params(cls, given: dict) -> dict:
    """Defaults overlaid with ``given``, each value checked by ``_checked``; then the whole
    set by ``cls.check_params`` (if the class has one)."""
    out = dict(cls.PARAMS)
    for k, v in given.items():
        if k not in cls.PARAMS:
            raise ValueError(f"unknown parameter {k!r} for workload {cls.NAME!r} "
                             f"(known: {', '.join(sorted(cls.PARAMS)) or 'none'})")
        out[k] = _checked(cls, k, v)
    check = getattr(cls, "check_params", None)
    if check is not None:
        try:
            check(out)
        except ValueError as e:
            raise ValueError(f"workload {cls.NAME!r}: {e}") from None
    return out


def _checked(cls, k: str, v):
    """``v`` as parameter ``k`` of ``cls`` takes it: of its default's type (an int is a float
    too), finite, within ``cls.LIMITS[k]`` (or not negative); ValueError naming both if not."""
    want = type(cls.PARAMS[k])
    if want is float and isinstance(v, int) and not isinstance(v, bool):
        try:
            v = float(v)
        except OverflowError:                       # too big for a float: not finite
            v = math.inf if v > 0 else -math.inf
    if not isinstance(v, want) or (want is int and isinstance(v, bool)):
        rule = f"takes {expected(want)}"
    elif want is float and not math.isfinite(v):
        rule = "must be a finite number"
    elif want in (int, float):
        lo, hi = getattr(cls, "LIMITS", {}).get(k, (0, None))
        if lo <= v and (hi is None or v <= hi):
            return v
        rule = (f"must be from {lo} to {hi}" if hi is not None else
                "must not be negative" if lo == 0 else f"must be at least {lo}")
    else:
        return v
    raise ValueError(f"parameter {k!r} of workload {cls.NAME!r} {rule}, got {v!r}")
