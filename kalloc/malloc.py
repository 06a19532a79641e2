"""The kernel malloc(9) API: malloc types, the Kernel object and boot().

Deterministic: the same arguments give the same addresses, byte for byte.

::

    k = kalloc.boot(backend="slab", ncpus=2, physmem="64M")
    devbuf = kalloc.MallocType("devbuf", "device driver memory")
    va = k.malloc(100, devbuf, kalloc.M_WAITOK | kalloc.M_ZERO, cpu=0)
    k.write(va, b"hello"); k.read(va, 5)
    k.free(va, devbuf, cpu=1)           # a remote free on slab: an IPI to cpu 0
    vnodes = k.cache_create("vnode", 200)   # object caches: kalloc.cache
    vp = k.cache_alloc(vnodes, kalloc.M_WAITOK, cpu=0)
    k.cache_free(vnodes, vp)

``boot`` builds the machine (kalloc.machine), the kernel map and pmap (kalloc.vm),
then the backend, and binds the backend's malloc/free/realloc/usable_size as the
kernel's own attributes: no dispatch, no pluggy on the hot path.

malloc types (``struct malloc_type``)
-------------------------------------
A ``MallocType`` is what MALLOC_DEFINE declares: a name and counters ``inuse``
(live allocations), ``memuse`` (bytes held, counted as the allocator counts them:
chunk or bucket size, not request size), ``calls``, ``maxused`` (high-water of memuse)
and ``limit``.  As in both originals it is initialised lazily by the first malloc
(malloc_init), which sets the limit by the backend's rule unless the type names one.
A type may be used with several kernels (tests boot many): the counters on the object
are those of the kernel it was last used with, and each kernel keeps the others
(``k.types[name]`` and ``k.stats()["types"]`` are always that kernel's own).
"""

from __future__ import annotations

import random

from kalloc import plugins
from kalloc.backends import debug
from kalloc.backends.base import resolve_options
from kalloc.machine import ARCHES, Machine, check_physmem, parse_size
from kalloc.vm import KernelVM

MAX_CPUS = 1024


class MallocType:
    """A malloc type: name, description, limit and its usage counters."""

    __slots__ = ("name", "desc", "limit", "inuse", "memuse", "calls", "maxused", "_limit_req", "_k")

    def __init__(self, name: str, desc: str = "", limit: int | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"malloc type name must be a non-empty string, got {name!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
            raise ValueError(f"malloc type {name!r}: limit must be a positive int or None, got {limit!r}")
        self.name = name
        self.desc = desc
        self._limit_req = limit
        self.limit = limit
        self.inuse = self.memuse = self.calls = self.maxused = 0
        self._k = None  # the kernel whose counters the object holds now

    def counters(self) -> tuple:
        return (self.limit, self.inuse, self.memuse, self.calls, self.maxused)

    def _load(self, c: tuple) -> None:
        self.limit, self.inuse, self.memuse, self.calls, self.maxused = c

    def __repr__(self) -> str:
        return f"MallocType({self.name!r}, inuse={self.inuse}, memuse={self.memuse})"


class Kernel:
    """A booted simulated kernel.  malloc/free/realloc/usable_size are the backend's
    own bound methods (see kalloc.backends.base for their contract)."""

    __slots__ = ("machine", "vm", "backend", "backend_name", "options", "seed", "rng",
                 "types", "_saved", "malloc", "free", "realloc", "usable_size",
                 "read", "write", "vtophys", "zones", "caches", "cache_create", "cache_alloc", "cache_free",
                 "cache_destroy")

    def __init__(self, machine: Machine, backend_cls: type, options: dict, seed: int):
        self.machine = machine
        self.vm = KernelVM(machine)
        self.seed = seed
        self.rng = random.Random(seed)
        self.types: dict[str, MallocType] = {}
        self.zones = None  # kalloc.vm_zone's zone list, made by the first zinit
        self.caches: dict = {}  # name -> kalloc.cache.Cache, in creation order
        self._saved: dict[MallocType, tuple] = {}
        self.options = options
        self.backend_name = backend_cls.NAME
        self.read = self.vm.read
        self.write = self.vm.write
        self.vtophys = self.vm.vtophys
        be = backend_cls(self, options)
        if debug.wanted(options):
            be = debug.DebugBackend(be, options)
            if options["quarantine"]:
                self.read = be.read
        self.backend = be
        self.malloc = be.malloc
        self.free = be.free
        self.realloc = be.realloc
        self.usable_size = be.usable_size
        # object caches (kalloc.cache), bound like malloc: the debug wrapper forwards them
        self.cache_create = be.cache_create
        self.cache_alloc = be.cache_alloc
        self.cache_free = be.cache_free
        self.cache_destroy = be.cache_destroy

    # --- malloc types ------------------------------------------------------------------
    def bind_type(self, t: MallocType) -> MallocType:
        """malloc_init: make ``t`` count for this kernel (slow path of every entry)."""
        if not isinstance(t, MallocType):
            raise TypeError(f"malloc type must be a kalloc.MallocType, not {type(t).__name__}")
        if t._k is self:
            return t
        if t._k is not None:
            t._k._saved[t] = t.counters()
        saved = self._saved.pop(t, None)
        if saved is not None:
            t._load(saved)
        else:
            other = self.types.get(t.name)
            if other is not None and other is not t:
                raise ValueError(f"malloc type name {t.name!r} is already used by another "
                                 f"MallocType in this kernel (use k.malloc_type({t.name!r}))")
            limit = t._limit_req if t._limit_req is not None else self.backend.default_type_limit()
            t._load((limit, 0, 0, 0, 0))
            self.types[t.name] = t
        t._k = self
        return t

    def malloc_type(self, name: str, desc: str = "", limit: int | None = None) -> MallocType:
        """This kernel's type of that name, defined (MALLOC_DEFINE) on first use."""
        t = self.types.get(name)
        return t if t is not None else self.bind_type(MallocType(name, desc, limit))

    def type_counters(self, t: MallocType) -> dict:
        if t._k is not self and t not in self._saved:
            raise ValueError(f"malloc type {getattr(t, 'name', t)!r} was never used with this kernel")
        c = t.counters() if t._k is self else self._saved[t]
        return dict(zip(("limit", "inuse", "memuse", "calls", "maxused"), c))

    # --- reports -----------------------------------------------------------------------
    def footprint(self) -> int:
        """Bytes of physical memory the kernel's allocators hold (wired pages)."""
        m = self.machine
        return (m.npages - m.free_count) * m.arch.page_size

    def stats(self) -> dict:
        m = self.machine
        ps = m.arch.page_size
        return {
            "backend": self.backend_name,
            "ncpus": m.ncpus,
            "physmem": m.physmem,
            "arch": m.arch.name,
            "options": dict(self.options),
            "types": {n: self.type_counters(t) for n, t in sorted(self.types.items())},
            "classes": self.backend.classes(),
            "caches": [self.backend.cache_row(c) for c in self.caches.values()],
            "pages": {"total": m.npages, "free": m.free_count, "wired": m.npages - m.free_count,
                      "page_size": ps},
            "vm": {"kernel_map_used": self.vm.kernel_map.size, "pages_mapped": self.vm.pages_mapped,
                   "pages_unmapped": self.vm.pages_unmapped, "bytes_zeroed": self.vm.bytes_zeroed,
                   "tlb_shootdowns": self.vm.tlb_shootdowns, "ipis": m.ipis},
            "counters": self.backend.counters(),
            **self.backend.extra_stats(),
        }

    # --- physically contiguous memory (kalloc.dma.contig) --------------------------------
    def contigmalloc(self, size, mtype, flags, low, high, alignment, boundary):
        """contigmalloc(9): physically contiguous pages in [low, high), mapped in kernel VA."""
        from kalloc.dma.contig import contigmalloc
        return contigmalloc(self, size, mtype, flags, low, high, alignment, boundary)

    def contigfree(self, addr, size, mtype) -> None:
        from kalloc.dma.contig import contigfree
        contigfree(self, addr, size, mtype)

    def __repr__(self) -> str:
        m = self.machine
        return f"<Kernel {self.backend_name} ncpus={m.ncpus} physmem={m.physmem} arch={m.arch.name}>"


def boot(backend: str = "slab", ncpus: int = 1, physmem="64M", seed: int = 0,
         arch: str = "i386", **options) -> Kernel:
    """Boot a simulated kernel with the named backend.  Bad arguments raise
    ValueError/TypeError with a message that says what is wrong."""
    cls = plugins.backend_class(backend)
    if isinstance(ncpus, bool) or not isinstance(ncpus, int):
        raise TypeError(f"ncpus must be an int, not {type(ncpus).__name__}")
    if not 1 <= ncpus <= MAX_CPUS:
        raise ValueError(f"ncpus must be between 1 and {MAX_CPUS}, got {ncpus}")
    if not isinstance(arch, str) or arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r} (known: {', '.join(ARCHES)})")
    a = ARCHES[arch]
    mem = check_physmem(parse_size(physmem, "physmem"), a)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    opts = resolve_options(cls, options)
    machine = Machine(ncpus, mem, a, opts["page_policy"])
    k = Kernel(machine, cls, opts, seed)
    plugins.plugin_manager().hook.kalloc_boot(kernel=k)
    return k
