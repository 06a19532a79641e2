"""The backend interface: what a kernel allocator must provide to kalloc.

A backend is a class; ``kalloc.boot`` makes one instance per kernel and binds its
``malloc``/``free``/``realloc``/``usable_size`` as the kernel's own methods, so a call
costs exactly the backend's code and nothing else.  The contract (docs/backends.md):

    NAME, DESCRIPTION            class attributes, NAME unique among plugins
    OPTIONS                      {name: Option}; boot(**options) is checked against it
    DEFAULT_PAGE_POLICY          the free-page order its kernel shipped with
    __init__(kernel, options)    kernel.machine, kernel.vm, kernel.types are ready
    malloc(size, mtype, flags=M_WAITOK, cpu=0) -> int | None     (PER-CPU)
    free(addr, mtype, cpu=0)                                     (MAY IPI)
    realloc(addr, size, mtype, flags=M_WAITOK, cpu=0) -> int | None
    usable_size(addr) -> int
    classes() -> [ {size, objs_per_slab, slab_bytes, first_offset, inuse, free, slabs} ]
    cache_init(cache), cache_alloc(cache, flags, cpu), cache_free(cache, addr, cpu),
    cache_fini(cache), cache_row(cache), cache_was_object(cache, addr)
                                 object caches (kalloc.cache); the defaults here are malloc
                                 with one malloc type per cache, as DragonFly's drivers did
    default_type_limit() -> int  ks_limit for a type that names none
    counters                     plain ints the harness prices (see COUNTERS)

Every entry point turns its flags into a plain int with ``FLAG_INT`` and checks its
arguments with one cheap guard; the slow ``check_args`` explains what was wrong.  Every
argument is checked before anything changes: an address that is not an int (a float
equal to a live one finds it in a dict) is refused before it leaves the live table, by
the arithmetic's own TypeError on the hot paths.  A free
of an address that is not a live allocation is always caught (``bad_free``), debug
options or not: silent corruption of a simulation is worse than a few nanoseconds.
"""

from __future__ import annotations

import math
import operator

from attrs import frozen

from kalloc.cache import Cache, cache_misuse, check_cache, check_destroy, forget, new_cache
from kalloc.errors import BadFree, DoubleFree, WildFree, WrongType, expected
from kalloc.flags import FLAG_INT, MallocFlags, plain_flags

# Counters a backend may keep (attributes with these names, plain ints).  The harness
# reads them before and after each operation and prices the difference.
COUNTERS = (
    "lock_acquires",   # acquisitions of a global lock (kmem_map's splhigh/giant)
    "crit_sections",   # cpu-local critical sections (slab)
    "remote_frees",    # frees of memory owned by another CPU (IPIs are counted by the machine)
    "remote_cas",      # compare-and-swap on another CPU's cache line (passive remote free)
    "cold_allocs",     # mallocs of memory not touched since it was mapped (a never-used
                       # chunk, a fresh page): its first touch misses the cache
)


@frozen
class Option:
    """One backend option: its default, type, help line and allowed values."""

    default: object
    help: str
    choices: tuple | None = None
    maximum: float | None = None

    def describe(self) -> dict:
        """What ``kalloc backends --format json`` shows of the option: its type, default,
        help, and the values it takes (choices, or the range of a number)."""
        want = type(self.default)
        out = {"type": expected(want), "default": self.default, "help": self.help}
        if self.choices is not None:
            out["choices"] = list(self.choices)
        elif want in (int, float):
            out["minimum"] = 0
            out["maximum"] = self.maximum
        return out

    def convert(self, backend: str, name: str, value):
        want = type(self.default)
        if want is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        elif want is float and isinstance(value, (int, str)) and not isinstance(value, bool):
            try:
                value = float(value)
            except ValueError:
                pass
        elif want is int and isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                pass
        if self.default is not None and not (isinstance(value, want) and not (want is int and isinstance(value, bool))):
            raise ValueError(f"option {name!r} of backend {backend!r} takes {expected(want)}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            named = ", ".join(str(c) if c != "" else "'' (the backend's default)" for c in self.choices)
            raise ValueError(f"option {name!r} of backend {backend!r} must be one of {named}; got {value!r}")
        if want is float and not math.isfinite(value):
            raise ValueError(f"option {name!r} of backend {backend!r} must be a finite number, got {value!r}")
        if want in (int, float) and value < 0:
            raise ValueError(f"option {name!r} of backend {backend!r} must not be negative, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"option {name!r} of backend {backend!r} must be at most {self.maximum}, got {value}")
        return value


# Options every backend takes because the core implements them (the debug ones through
# the wrapper in kalloc.backends.debug; ``invariants`` also switches on each backend's own
# INVARIANTS checks).
COMMON_OPTIONS = {
    "page_policy": Option(
        "", "free-page order: 4.8, 2003-08 or 2003-09-14 (default: the backend's own)",
        ("", "4.8", "2003-08", "2003-09-14")),
    "invariants": Option(False, "the original's INVARIANTS checks and poisoning, and an M_ZERO check"),
    "redzone": Option(0, "guard bytes before and after each allocation, checked at free", maximum=1 << 16),
    "quarantine": Option(0, "freed blocks held back (poisoned) to catch use-after-free", maximum=1 << 24),
    "fail_probability": Option(0.0, "failslab: chance that a call that may fail fails", maximum=1.0),
    "fail_interval": Option(0, "failslab: fail every Nth call that may fail"),
    "fail_times": Option(0, "failslab: at most this many injected failures (0: no limit)"),
    "fail_type": Option("", "failslab: only calls for this malloc type"),
    "fail_size_min": Option(0, "failslab: only sizes from this"),
    "fail_size_max": Option(0, "failslab: only sizes up to this (0: no limit)"),
    # The machine's mechanisms (docs/cost-model.md): each on by default as the 2003 kernels
    # had it, each with a switch to the simpler pricing kalloc had before.
    "idle_zero": Option(True, "idle CPUs zero free pages (vm_page_zero_idle) and zero-preferring page requests "
                              "take them without a bzero (default: as the backend's kernel did, IDLE_ZERO)"),
    "ipi_drain": Option(True, "one interrupt drains every queued IPI message (lwkt_process_ipiq); "
                              "false: one interrupt per message"),
    "tlb_model": Option("2003", "2003: smp_invltlb, an all-but-self IPI not waited for, each receiver "
                                "interrupted; sync: the initiator pays a synchronous shootdown",
                        ("2003", "sync")),
    "coherence": Option(True, "shared cache lines move between CPUs (malloc_type counters, bucket heads, "
                              "chunks reused on another CPU), one coherence_miss each"),
    "lock_hold": Option("serialised", "serialised: the global lock is held for the locked part of an "
                                      "operation only; whole: for all of it", ("serialised", "whole")),
    "kernel_build": Option("auto", "auto: a 1-CPU machine runs a UP kernel (no lock prefix); smp: SMP "
                                   "locks on 1 CPU too", ("auto", "smp")),
    "giant": Option(False, "what-if: all kernel work of the workload under one lock, as drivers ran "
                           "under Giant/the MP lock in 2003"),
}

# The options above that belong to the machine and the harness, not to a backend.
MACHINE_OPTIONS = ("idle_zero", "ipi_drain", "tlb_model", "coherence", "lock_hold", "kernel_build", "giant")


def resolve_options(cls, given: dict) -> dict:
    """Defaults overlaid with ``given``, each value checked against the backend's OPTIONS."""
    declared = {**COMMON_OPTIONS, **cls.OPTIONS}
    out = {k: o.default for k, o in declared.items()}
    for k, v in given.items():
        if k not in declared:
            raise ValueError(f"unknown option {k!r} for backend {cls.NAME!r} "
                             f"(known: {', '.join(sorted(declared))})")
        out[k] = declared[k].convert(cls.NAME, k, v)
    if not out["page_policy"]:
        out["page_policy"] = cls.DEFAULT_PAGE_POLICY
    if "idle_zero" not in given:
        out["idle_zero"] = getattr(cls, "IDLE_ZERO", COMMON_OPTIONS["idle_zero"].default)
    if "tlb_model" not in given:
        out["tlb_model"] = getattr(cls, "TLB_MODEL", COMMON_OPTIONS["tlb_model"].default)
    return out


def check_args(size, flags, cpu, ncpus: int, what: str = "malloc") -> tuple[int, int]:
    """The slow path of the entry guard: a clear error, or (size, flags) as plain ints."""
    f = plain_flags(flags)
    if isinstance(size, bool) or not hasattr(size, "__index__"):
        raise TypeError(f"{what}: size must be an integer, not {type(size).__name__}")
    size = operator.index(size)
    if size < 0:
        raise ValueError(f"{what}: negative size {size}")
    if isinstance(cpu, bool) or not isinstance(cpu, int) or not 0 <= cpu < ncpus:
        raise ValueError(f"{what}: cpu {cpu!r} out of range (machine has {ncpus} CPUs)")
    return size, f


def bad_free(backend, addr, mtype, live: dict, what: str = "free") -> BadFree:
    """Explain a free (or a ``what`` call: realloc, usable_size) of an address that is not a
    live allocation of ``mtype`` (None: any type)."""
    name = getattr(mtype, "name", mtype)
    typed = "" if mtype is None else f" (type '{name}')"
    if addr.__class__ is not int:              # bool, numpy's and other int subclasses too
        return WildFree(f"{what}: address must be an int, not {type(addr).__name__}", None)
    owner = live.get(addr)
    if owner.__class__ is Cache:
        return WrongType(f"{what}: {addr:#x} is an object of cache '{owner.name}': give it back with cache_free", addr)
    if owner is not None:
        return WrongType(f"{what}: {addr:#x} was allocated as type '{owner.name}' but freed as type '{name}'", addr)
    for start, t in live.items():
        if start < addr < start + backend.usable_size(start):
            return WildFree(f"{what}: {addr:#x} is inside the live allocation at {start:#x} "
                            f"(type '{t.name}'): interior pointer", addr)
    if backend.was_chunk(addr):
        return DoubleFree(f"{what}: {addr:#x}{typed} is already free: double free", addr)
    return WildFree(f"{what}: {addr:#x}{typed} was never allocated by backend "
                    f"'{backend.NAME}': wild pointer", addr)


class Backend:
    """Base class for backends: option handling, counters and the bad-free report."""

    NAME = ""
    DESCRIPTION = ""
    OPTIONS: dict = {}
    DEFAULT_PAGE_POLICY = "4.8"
    IDLE_ZERO = True              # whether its kernel's idle loop zeroed free pages (4.8: yes)
    ZERO_UNDER_LOCK = True        # whether its M_ZERO bzero runs with the global lock held
    TLB_MODEL = "2003"            # the default tlb_model: "sync" for a kernel whose allocator
                                  # memory needs no per-page invalidation IPIs (Linux's direct map)

    def __init__(self, kernel, options: dict):
        self.kernel = kernel
        self.machine = kernel.machine
        self.vm = kernel.vm
        self.options = options
        for c in COUNTERS:
            setattr(self, c, 0)

    def was_chunk(self, addr: int) -> bool:
        """Whether addr is where this backend hands out (or handed out) an allocation
        that is now free: tells a double free from a wild one.  Slow path only."""
        return False

    def default_type_limit(self) -> int:
        return 1 << 62

    def extra_stats(self) -> dict:
        """Backend-specific additions to ``kernel.stats()`` (JSON-serialisable)."""
        return {}

    def counters(self) -> dict:
        return {c: getattr(self, c) for c in COUNTERS}

    # --- object caches (kalloc.cache): the entry points, then the default implementation ------
    def cache_create(self, name, size, align=0, flags=0, ctor=None) -> Cache:
        """kmem_cache_create: checked and registered by kalloc.cache, made by ``cache_init``."""
        c = new_cache(self.kernel, name, size, align, flags, ctor)
        try:
            self.cache_init(c)
        except BaseException:
            forget(self.kernel, c)
            raise
        return c

    def cache_destroy(self, cache) -> None:
        """kmem_cache_destroy: a KernelPanic while objects are live; else ``cache_fini``."""
        check_destroy(self.kernel, cache)
        self.cache_fini(cache)
        forget(self.kernel, cache)

    def cache_init(self, cache) -> None:
        """The default: each object is a malloc of the size rounded up to the alignment
        (``impl``), charged to the cache's own malloc type."""
        a = cache.align or 1
        cache.impl = (cache.object_size + a - 1) // a * a

    def cache_fini(self, cache) -> None:
        """The default keeps nothing of its own: the malloc type stays, as MALLOC_DEFINE's."""

    def cache_alloc(self, cache, flags=2, cpu=0):
        """The default: malloc, then the constructor (at each allocation: malloc keeps no
        constructed state)."""
        if cache.__class__ is not Cache or cache.destroyed or cache.kernel is not self.kernel:
            check_cache(self.kernel, cache, "cache_alloc")
        va = self.malloc(cache.impl, cache.mtype, flags, cpu)
        if va is not None:
            cache.live.add(va)
            if cache.ctor is not None:
                cache.ctor(self.kernel, va)
        return va

    def cache_free(self, cache, addr, cpu=0) -> None:
        """The default: a live object of the cache goes back with free(); anything else is
        explained by kalloc.cache."""
        if cache.__class__ is not Cache or cache.destroyed or cache.kernel is not self.kernel:
            check_cache(self.kernel, cache, "cache_free")
        if addr.__class__ is not int or addr not in cache.live:
            raise cache_misuse(self.kernel, cache, addr)
        self.free(addr, cache.mtype, cpu)
        cache.live.remove(addr)

    def cache_was_object(self, cache, addr: int) -> bool:
        """Whether ``addr`` is a free object of ``cache`` (a double free); the default asks
        ``was_chunk``, which knows malloc's chunks, not whose they were."""
        return self.was_chunk(addr)

    def cache_row(self, cache) -> dict:
        """The default's row: the slot is the malloc class that serves the size; its slabs
        are shared with every malloc of that class, so only the objects are the cache's."""
        slot = cache.impl
        cls = min((r for r in self.classes() if r["size"] >= slot), key=lambda r: r["size"], default=None)
        page = self.machine.arch.page_size
        return {"name": cache.name, "object_size": cache.object_size, "slab_size": cls["size"] if cls else slot,
                "align": cache.align, "objs_per_slab": cls["objs_per_slab"] if cls else None,
                "order": (cls["slab_bytes"] // page).bit_length() - 1 if cls else None,
                "active_objs": len(cache.live), "num_objs": None, "active_slabs": None, "num_slabs": None}

    # realloc's shared steps, for backends that keep ``self.ncpus``, ``self.vm`` and the
    # ``self.live`` dict (address -> type), as the built-in ones do.
    def _realloc_args(self, size, flags, cpu) -> tuple[int, int]:
        """realloc's argument guard: (size, flags) as plain ints, or the error naming realloc."""
        f = FLAG_INT.get(flags, -1)
        if (f < 0 or size.__class__ is not int or size < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or flags.__class__ is not int and flags.__class__ is not MallocFlags):
            return check_args(size, flags, cpu, self.ncpus, "realloc")
        return size, f

    def _realloc_owned(self, addr, mtype) -> None:
        """The block must be a live allocation of ``mtype`` at an int (a float equal to it
        is no address); else the bad free, naming realloc."""
        if addr.__class__ is not int or self.live.get(addr, self.live) is not mtype:   # `live`: never a type
            raise bad_free(self, addr, mtype, self.live, "realloc")

    def _realloc_move(self, addr, old: int, size: int, mtype, f: int, cpu: int):
        """realloc when the block cannot stay: malloc, copy min(size, old) bytes, free the
        old block.  A failed malloc returns None and keeps the old block, as realloc(9) does."""
        new = self.malloc(size, mtype, f, cpu)
        if new is not None:
            self.vm.copy(new, addr, min(size, old))
            self.free(addr, mtype, cpu)
        return new
