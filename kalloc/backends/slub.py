"""``slub``: Linux SLUB as in v6.18 (mm/slub.c, mm/slab_common.c, mm/slab.h, include/linux/slab.h).

Deterministic: the same calls give the same addresses, byte for byte.  The rules below are
the kernel's own, computed (never tabulated); tests/test_slub_reference.py checks them
against /proc/slabinfo and /sys/kernel/slab of the 2-CPU Linux 6.18.44 machine whose series
recorded tests/traces/ (tests/reference/slub_6.18.json).  docs/slub.md is the long version.

The data structures
-------------------
A ``struct kmem_cache`` per object size and kind.  Its memory is *slabs*: 2^order pages from
the page allocator (naturally aligned), cut into ``objects`` slots of ``size`` bytes from the
first byte on, no header (the metadata is ``struct slab``, which overlays the first
``struct page``).  A free object holds the link of its slab's freelist at ``offset`` (in the
middle of the object, or after it when a constructor, SLAB_TYPESAFE_BY_RCU or poisoning must
keep the object intact)::

    kmem_cache "kmalloc-192" (size 192, order 0, 21 objects, cpu_partial_slabs 12, min_partial 5)

    per CPU (kmem_cache_cpu)          slab = 4 KiB, no header              node (kmem_cache_node)
    cpu0: freelist -> o3 -> o7 -> NULL  +----+----+----+- ... -+----+-----+  list_lock (a spinlock
          slab ---------------------->  | o0 | o1 | o2 |       | o20|waste|  every CPU takes)
          partial -> S5 -> S9 -> NULL   +----+----+----+- ... -+----+-----+  partial: S2 <-> S4 <-> ..
    cpu1: freelist, slab, partial        ^ slab->freelist: frees by other CPUs   nr_partial
                                         (cmpxchg_double on freelist+counters)

* The *CPU slab* (``c->slab``) is frozen: only its CPU allocates from it.  Its free objects
  are in ``c->freelist``, taken and given back with ``this_cpu_cmpxchg_double`` on the CPU's
  own line (no lock prefix, no interrupts off): ``crit_sections``.  Other frees go to the
  slab's own ``slab->freelist`` with a ``cmpxchg_double`` on ``struct slab``: ``remote_cas``
  when another CPU wrote that line last (kalloc.coherence ``take``: the move is in the
  price), else one more ``crit_sections``; the owner's next refill reads the line back, a
  coherence miss.  No IPI.
* When ``c->freelist`` runs dry, ``___slab_alloc`` (under the per-CPU ``local_lock``: one more
  ``crit_sections``) takes ``slab->freelist`` (the remote frees) with ``get_freelist``; an empty
  one unfreezes the slab, which is then on no list at all (SLUB keeps no full list).  Next come
  the per-CPU *partial* slabs (unfrozen, each with free objects), then ``get_partial_node``
  under ``n->list_lock`` (``lock_acquires``: the lock CPUs contend for in virtual time), which
  takes one slab to use and up to ``cpu_partial_slabs / 2`` more for the CPU's partial list,
  and last ``new_slab`` from the page allocator at ``oo_order`` (``s->min`` on failure).
* A free into a full unfrozen slab puts it on the *freeing* CPU's partial list
  (``put_cpu_partial``); when that list already holds ``cpu_partial_slabs`` slabs it is
  drained to the node list under ``list_lock`` (``__put_partials``), and slabs with no object
  in use are given back to the page allocator once the node holds ``min_partial``.
* kmalloc: 13 caches per kind (8, 16, 32, 64, 96, 128, 192, 256, 512, 1k, 2k, 4k, 8k;
  ``kmalloc_index``), kinds NORMAL, RECLAIM (``__GFP_RECLAIMABLE``), DMA (``__GFP_DMA``) and
  CGROUP (``__GFP_ACCOUNT``) chosen by ``kmalloc_type``; above 8 KiB ``kmalloc_large``: whole
  pages of order ``get_order(size)``.

Simplifications (docs/slub.md): one NUMA node; no KASAN, KFENCE, slub_debug checks at run
time (debug flags change the geometry as the kernel computes it, the paths stay the
non-debug ones without per-CPU partial slabs); memcg charged to the malloc type, not
enforced, and no malloc_type line is shared (Linux keeps no per-type counters); freelists
are out of band (Python lists; the free pointer is not written into the object), in
address order (no CONFIG_SLAB_FREELIST_RANDOM); every cache's ``list_lock`` is the one
global lock of kalloc's harness (its line's move is the harness's ``lock_handoff``); the
page allocator's per-CPU lists take no lock.  Slab pages are mapped into the kernel map
without invalidation IPIs when freed (Linux's direct map), hence ``TLB_MODEL = "sync"``.
Sheaves (6.18's opt-in per-CPU arrays of free objects in front of the CPU slab, option
``sheaves``: the sheaf_capacity of the caches cache_create makes) follow alloc_from_pcs and
free_to_pcs with the main and spare sheaves and the node's barn; their refill and flush take
the slab paths one object at a time, where the kernel's bulk calls batch them.
"""

from __future__ import annotations

import attrs
from attrs import define, field, frozen

from kalloc.backends.base import Backend, Option, bad_free, check_args
from kalloc.cache import CONFIG, SLAB, Cache, cache_misuse, check_cache
from kalloc.errors import Deadlock, KernelPanic
from kalloc.flags import FLAG_INT, MAY_FAIL, NOWAIT, NULLOK, USE_RESERVE, ZERO, MallocFlags, flag_names
from kalloc.hookspecs import hookimpl
from kalloc.machine import VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM

# --- constants of x86 and include/linux/slab.h, mm/slub.c (v6.18) -------------------------------
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10                       # CONFIG_ARCH_FORCE_MAX_ORDER on x86
PAGE_ALLOC_COSTLY_ORDER = 3               # slub_max_order's default
KMALLOC_MIN_SIZE = 8                      # ARCH_KMALLOC_MINALIGN: __alignof__(unsigned long long)
KMALLOC_SHIFT_LOW = 3                     # ilog2(KMALLOC_MIN_SIZE)
KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1       # SLUB: caches up to 2 pages
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
KMALLOC_SHIFT_MAX = MAX_PAGE_ORDER + PAGE_SHIFT
KMALLOC_MAX_SIZE = 1 << KMALLOC_SHIFT_MAX  # 4 MiB
MAX_OBJS_PER_PAGE = 32767                 # slab->objects is 15 bits
MIN_PARTIAL = 5
MAX_PARTIAL = 10
L1_CACHE_BYTES = 64                       # cache_line_size() on x86
TRACK_SIZE = 32                           # sizeof(struct track) with CONFIG_STACKDEPOT (64-bit)
ZERO_SIZE_PTR = 16
MAX_FULL_SHEAVES = 10                     # a barn's full sheaves before frees go to the slabs
SHEAF_HEADER = 32                         # struct slab_sheaf before objects[]: rcu_head, cache, size, node

# The SLAB_* flags of 6.18 for kalloc's config (kalloc.cache computes them from the enum).
SLAB_CONSISTENCY_CHECKS = SLAB["SLAB_CONSISTENCY_CHECKS"]
SLAB_RED_ZONE = SLAB["SLAB_RED_ZONE"]
SLAB_POISON = SLAB["SLAB_POISON"]
SLAB_KMALLOC = SLAB["SLAB_KMALLOC"]
SLAB_HWCACHE_ALIGN = SLAB["SLAB_HWCACHE_ALIGN"]
SLAB_CACHE_DMA = SLAB["SLAB_CACHE_DMA"]
SLAB_CACHE_DMA32 = SLAB["SLAB_CACHE_DMA32"]
SLAB_STORE_USER = SLAB["SLAB_STORE_USER"]
SLAB_PANIC = SLAB["SLAB_PANIC"]
SLAB_TYPESAFE_BY_RCU = SLAB["SLAB_TYPESAFE_BY_RCU"]
SLAB_TRACE = SLAB["SLAB_TRACE"]
SLAB_NOLEAKTRACE = SLAB["SLAB_NOLEAKTRACE"]
SLAB_NO_MERGE = SLAB["SLAB_NO_MERGE"]
SLAB_FAILSLAB = SLAB["SLAB_FAILSLAB"]
SLAB_ACCOUNT = SLAB["SLAB_ACCOUNT"]
SLAB_RECLAIM_ACCOUNT = SLAB["SLAB_RECLAIM_ACCOUNT"]
SLAB_DEBUG_FLAGS = SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_CONSISTENCY_CHECKS
SLAB_NEVER_MERGE = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE | SLAB_TYPESAFE_BY_RCU
                    | SLAB_NOLEAKTRACE | SLAB_FAILSLAB | SLAB_NO_MERGE)
SLAB_MERGE_SAME = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT

# include/linux/gfp_types.h (the values kalloc_compat.linux exports)
__GFP_DMA = 0x01
__GFP_RECLAIMABLE = 0x10
__GFP_ACCOUNT = 0x400000

KMALLOC_NORMAL, KMALLOC_RECLAIM, KMALLOC_DMA, KMALLOC_CGROUP = range(4)
KMALLOC_KINDS = ("NORMAL", "RECLAIM", "DMA", "CGROUP")
_KIND_PREFIX = ("kmalloc-", "kmalloc-rcl-", "dma-kmalloc-", "kmalloc-cg-")
_KIND_FLAGS = (SLAB_NO_MERGE if CONFIG["MEMCG"] else 0,   # new_kmalloc_cache: MEMCG -> NORMAL unmergeable
               SLAB_RECLAIM_ACCOUNT, SLAB_CACHE_DMA, SLAB_ACCOUNT)


# --- the rules, as pure functions -----------------------------------------------------------------
def fls(x: int) -> int:
    return x.bit_length()


def ilog2(x: int) -> int:
    return x.bit_length() - 1


def get_order(size: int) -> int:
    """The smallest order whose 2^order pages hold ``size`` bytes (get_order(0) is undefined)."""
    return max(0, fls((size - 1) >> PAGE_SHIFT))


def align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def kmalloc_index(size: int) -> int:
    """__kmalloc_index: 0 for size 0, 1 for 65..96, 2 for 129..192, else ceil(log2(size))
    (at least KMALLOC_SHIFT_LOW); -1 above KMALLOC_MAX_CACHE_SIZE (a kmalloc_large)."""
    if not size:
        return 0
    if size <= KMALLOC_MIN_SIZE:
        return KMALLOC_SHIFT_LOW
    if KMALLOC_MIN_SIZE <= 32 and 64 < size <= 96:
        return 1
    if KMALLOC_MIN_SIZE <= 64 and 128 < size <= 192:
        return 2
    if size > KMALLOC_MAX_CACHE_SIZE:
        return -1
    return fls(size - 1)


def kmalloc_cache_size(index: int) -> int:
    """kmalloc_info[index].size: 96 and 192 at 1 and 2, 2^index otherwise."""
    return {1: 96, 2: 192}.get(index, 1 << index)


def kmalloc_cache_name(kind: int, size: int) -> str:
    """kmalloc_info's names: kmalloc-96, kmalloc-rcl-1k, dma-kmalloc-8k, kmalloc-cg-64."""
    return _KIND_PREFIX[kind] + (f"{size >> 10}k" if size >= 1024 else str(size))


def kmalloc_type(gfp: int, config: dict = CONFIG) -> int:
    """kmalloc_type: NORMAL unless one of KMALLOC_NOT_NORMAL_BITS is set; then DMA for
    __GFP_DMA, RECLAIM for __GFP_RECLAIMABLE (or without memcg), else CGROUP."""
    not_normal = (__GFP_RECLAIMABLE | (__GFP_DMA if config["ZONE_DMA"] else 0)
                  | (__GFP_ACCOUNT if config["MEMCG"] else 0))
    if not gfp & not_normal:
        return KMALLOC_NORMAL
    if config["ZONE_DMA"] and gfp & __GFP_DMA:
        return KMALLOC_DMA
    if not config["MEMCG"] or gfp & __GFP_RECLAIMABLE:
        return KMALLOC_RECLAIM
    return KMALLOC_CGROUP


def calculate_alignment(flags: int, align: int, size: int, ptr: int = 8) -> int:
    """slab_common.c calculate_alignment: SLAB_HWCACHE_ALIGN gives the cache line, halved
    while the object fits in half of it; at least arch_slab_minalign(); a pointer multiple."""
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = L1_CACHE_BYTES
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    align = max(align, KMALLOC_MIN_SIZE)
    return align_up(align, ptr)


def kmalloc_align(size: int) -> int:
    """create_boot_cache: kmalloc caches are aligned to the largest power of two dividing
    their size (96: 32, 192: 64, 2^k: 2^k), at least ARCH_KMALLOC_MINALIGN."""
    return max(KMALLOC_MIN_SIZE, size & -size)


def order_objects(order: int, size: int) -> int:
    return (PAGE_SIZE << order) // size


def min_objects_for(ncpus: int) -> int:
    """calculate_order's default slub_min_objects: 4 * (fls(num_present_cpus()) + 1)."""
    return 4 * (fls(ncpus) + 1)


def calc_slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    """The first order from min_order whose leftover is at most 1/fract_leftover of the slab
    (max_order + 1 if none)."""
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, ncpus: int, min_objects: int = 0, max_order: int = PAGE_ALLOC_COSTLY_ORDER,
                    min_order: int = 0) -> int:
    """mm/slub.c calculate_order: at least min_objects per slab (capped by what max_order
    holds), the smallest order wasting at most 1/16, 1/8, 1/4, then 1/2 of the slab."""
    if not min_objects:
        min_objects = min_objects_for(ncpus)
    max_objects = max(order_objects(max_order, size), 1)
    min_objects = min(min_objects, max_objects)
    lo = max(min_order, get_order(min_objects * size))
    if order_objects(lo, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    fraction = 16
    while fraction > 1:
        order = calc_slab_order(size, lo, max_order, fraction)
        if order <= max_order:
            return order
        fraction //= 2
    order = get_order(size)
    if order <= MAX_PAGE_ORDER:
        return order
    raise KernelPanic(f"calculate_order({size}): no order fits (-ENOSYS)")


def min_partial_for(size: int) -> int:
    """kmem_cache_open / set_min_partial: ilog2(size) / 2, within [MIN_PARTIAL, MAX_PARTIAL]."""
    return max(MIN_PARTIAL, min(MAX_PARTIAL, ilog2(size) // 2))


def cpu_partial_for(size: int, objects: int, has_cpu_partial: bool = True) -> tuple[int, int]:
    """set_cpu_partial: (cpu_partial objects, cpu_partial_slabs = ceil(2 * objects / per slab):
    the slabs are assumed half full).  0 for debug caches."""
    if not has_cpu_partial:
        nr = 0
    elif size >= PAGE_SIZE:
        nr = 6
    elif size >= 1024:
        nr = 24
    elif size >= 256:
        nr = 52
    else:
        nr = 120
    return nr, -(-nr * 2 // objects)


@frozen
class Geometry:
    """What calculate_sizes and kmem_cache_open decide for one cache (sysfs names)."""

    object_size: int
    size: int              # slab_size: the slot
    align: int
    offset: int            # the free pointer, from the object's start
    inuse: int             # object + its metadata before the free pointer
    order: int
    objects: int           # objs_per_slab
    min_order: int         # s->min: the fallback when a slab of ``order`` cannot be had
    min_objects: int
    cpu_partial: int
    cpu_partial_slabs: int
    min_partial: int
    red_left_pad: int
    flags: int
    sheaf_capacity: int

    @property
    def ksize(self) -> int:
        """slab_ksize: what ksize() reports for an object of this cache."""
        if self.flags & (SLAB_RED_ZONE | SLAB_POISON):
            return self.object_size
        if self.flags & (SLAB_TYPESAFE_BY_RCU | SLAB_STORE_USER):
            return self.inuse
        return self.size


def calculate_sizes(object_size: int, align: int = 0, flags: int = 0, ctor: bool = False,
                    freeptr_offset: int | None = None, ncpus: int = 2, ptr: int = 8,
                    max_order: int = PAGE_ALLOC_COSTLY_ORDER, min_objects: int = 0, min_order: int = 0,
                    sheaf_capacity: int = 0) -> Geometry:
    """__kmem_cache_create_args -> calculate_alignment, calculate_sizes, calculate_order,
    set_min_partial, set_cpu_partial.  ``align`` is the caller's (kmem_cache_args.align),
    ``freeptr_offset`` its kmem_cache_args.freeptr_offset (use_freeptr_offset when given)."""
    if flags & SLAB_KMALLOC:
        align = max(align, kmalloc_align(object_size))
    align = calculate_alignment(flags, align, object_size, ptr)
    size = align_up(object_size, ptr)
    if flags & SLAB_RED_ZONE and size == object_size:
        size += ptr                              # the right red zone word
    inuse = size
    orig_size = bool(flags & SLAB_KMALLOC and flags & SLAB_STORE_USER)   # slub_debug_orig_size
    if ((flags & SLAB_TYPESAFE_BY_RCU and freeptr_offset is None) or flags & SLAB_POISON or ctor
            or (flags & SLAB_RED_ZONE and (object_size < ptr or orig_size))):
        offset = size                            # after the object: it must stay intact
        size += ptr
    elif flags & SLAB_TYPESAFE_BY_RCU:
        offset = freeptr_offset
    else:
        offset = (object_size // 2) // ptr * ptr  # ALIGN_DOWN(object_size / 2): in the middle
    if flags & SLAB_STORE_USER:
        size += 2 * TRACK_SIZE
        if flags & SLAB_KMALLOC:
            size += 4                            # orig_size
    red_left_pad = 0
    if flags & SLAB_RED_ZONE:
        size += ptr
        red_left_pad = align_up(ptr, align)
        size += red_left_pad
    size = align_up(size, align)
    order = calculate_order(size, ncpus, min_objects, max_order, min_order)
    objects = order_objects(order, size)
    debug = bool(flags & SLAB_DEBUG_FLAGS)
    cpu_partial, cpu_partial_slabs = cpu_partial_for(size, objects, not debug)
    mo = min_objects or min_objects_for(ncpus)
    return Geometry(object_size, size, align, offset, inuse, order, objects, get_order(size), mo,
                    cpu_partial, cpu_partial_slabs, min_partial_for(size), red_left_pad, flags,
                    0 if debug else sheaf_capacity)


# --- slabs, CPUs and caches -----------------------------------------------------------------------
NOWHERE, NODE_PARTIAL, CPU_PARTIAL = 0, 1, 2


@define(slots=True, eq=False)
class Slab:
    """struct slab: the slab's pages, its own freelist (end = head), ``inuse`` (all objects
    while frozen), ``frozen`` (the CPU whose CPU slab it is, or -1) and on which list it is."""

    base: int
    cache: "SlubCache"
    order: int
    objects: int
    freelist: list
    inuse: int = 0
    frozen: int = -1
    where: int = NOWHERE
    cpu: int = -1                         # whose per-CPU partial list, when where == CPU_PARTIAL
    fresh: int = 0                        # first object never handed out (cold memory)


@define(slots=True, eq=False)
class KmemCacheCpu:
    """struct kmem_cache_cpu: the lockless freelist of the CPU slab, the CPU slab, the partial slabs."""

    freelist: list = field(factory=list)
    slab: Slab | None = None
    partial: list = field(factory=list)   # end = head (slab->next chains to the older ones)


@define(slots=True, eq=False)
class Sheaf:
    """struct slab_sheaf: up to sheaf_capacity free objects (the end of the list is the top)
    in memory of its own, kmalloc'd (``va``)."""

    va: int
    objects: list = field(factory=list)


@define(slots=True, eq=False)
class PercpuSheaves:
    """struct slub_percpu_sheaves: the main sheaf allocations pop and frees push, and a spare."""

    main: Sheaf
    spare: Sheaf | None = None


@define(slots=True, eq=False)
class SlubCache:
    """struct kmem_cache with its node (kmem_cache_node) and per-CPU parts."""

    name: str
    geo: Geometry
    kind: int = -1                        # kmalloc kind, -1 for a named cache
    cpus: list = field(factory=list)
    partial: dict = field(factory=dict)   # n->partial, an ordered set: first = head
    nr_slabs: int = 0
    total_objects: int = 0
    allocated: int = 0                    # objects handed out and not freed
    refcount: int = 1                     # kmem_cache_create calls it serves (merging)
    aliases: list = field(factory=list)   # the names merged into it (find_mergeable)
    ctor: object = None                   # ctor(kernel, addr), run by setup_object
    pcs: list | None = None               # cpu_sheaves (per CPU PercpuSheaves), None without sheaves
    barn_full: list = field(factory=list)  # the node's barn: full and empty sheaves (end = head)
    barn_empty: list = field(factory=list)

    @property
    def size(self) -> int:
        return self.geo.size


class SlubBackend(Backend):
    NAME = "slub"
    DESCRIPTION = "Linux SLUB as in v6.18: per-CPU slabs with lockless freelists, partial lists, kmalloc caches"
    DEFAULT_PAGE_POLICY = "4.8"
    ALIGNS_POWERS_OF_TWO = True            # kmalloc's natural alignment for powers of two
    IDLE_ZERO = False                      # Linux has no idle-loop page zeroing
    ZERO_UNDER_LOCK = False                # __GFP_ZERO is a memset after the allocation
    TLB_MODEL = "sync"                     # slab pages live in the direct map: no IPIs per page
    OPTIONS = {
        "slub_max_order": Option(PAGE_ALLOC_COSTLY_ORDER, "largest slab order (slab_max_order=)",
                                 maximum=MAX_PAGE_ORDER),
        "slub_min_order": Option(0, "smallest slab order (slab_min_order=)", maximum=MAX_PAGE_ORDER),
        "slub_min_objects": Option(0, "objects per slab wanted (slab_min_objects=; 0: 4 * (fls(ncpus) + 1))",
                                   maximum=MAX_OBJS_PER_PAGE),
        "cpu_partial": Option(True, "per-CPU partial slabs (CONFIG_SLUB_CPU_PARTIAL)"),
        "merge": Option(True, "merge compatible caches (find_mergeable); false: slab_nomerge"),
        "sheaves": Option(0, "sheaf_capacity of the caches cache_create makes (6.18's per-CPU object "
                             "arrays; maple_node and vm_area_struct ask for 32); 0: none", maximum=1024),
    }

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        if options["slub_min_order"] > options["slub_max_order"]:
            raise ValueError("option 'slub_min_order' of backend 'slub' must not exceed slub_max_order")
        m = self.machine
        if m.arch.page_size != PAGE_SIZE:
            raise ValueError("backend 'slub' models 4 KiB pages")
        self.ncpus = m.ncpus
        self.ptr = m.arch.ptr_size
        self.max_order = options["slub_max_order"]
        self.min_order = options["slub_min_order"]
        self.min_objects = options["slub_min_objects"]
        self.use_cpu_partial = options["cpu_partial"]
        self.merge = options["merge"]
        self.sheaves = options["sheaves"]
        self.sheaf_type = None                 # the malloc type of struct slab_sheaf, made by the first
        self.touch = m.lines.touch if m.ncpus > 1 and options["coherence"] else None
        self.take = m.lines.take if self.touch is not None else None
        self.live: dict = {}               # addr -> MallocType, the always-on check
        self.page_slab: dict = {}          # page number -> Slab (every page of every slab)
        self.large: dict = {}              # addr -> order of a kmalloc_large block
        self.large_freed: set = set()
        self.caches: list = []             # slab_caches, in creation order
        self.slabs_allocated = self.slabs_freed = 0
        self.list_lock_takes = 0
        # kmalloc_caches[kind][index], made at boot (create_kmalloc_caches)
        self.kmalloc_caches = [[None] * (KMALLOC_SHIFT_HIGH + 1) for _ in KMALLOC_KINDS]
        for kind in range(len(KMALLOC_KINDS)):
            for index in (1, 2, *range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)):   # 96, 192 first
                size = kmalloc_cache_size(index)
                self.kmalloc_caches[kind][index] = self.create_cache(
                    kmalloc_cache_name(kind, size), size, 0, SLAB_KMALLOC | _KIND_FLAGS[kind], kind=kind)
        normal = self.kmalloc_caches[KMALLOC_NORMAL]
        # the hot path's kmalloc_slab for NORMAL: request size -> cache
        self._kmalloc = [None] + [normal[kmalloc_index(n)] for n in range(1, KMALLOC_MAX_CACHE_SIZE + 1)]

    def create_cache(self, name: str, object_size: int, align: int = 0, flags: int = 0, ctor=None,
                     freeptr_offset: int | None = None, sheaf_capacity: int = 0, kind: int = -1) -> SlubCache:
        """do_kmem_cache_create: the geometry by the kernel's rules and the per-CPU structures."""
        geo = calculate_sizes(object_size, align, flags, ctor is not None, freeptr_offset, self.ncpus, self.ptr,
                              self.max_order, self.min_objects, self.min_order, sheaf_capacity)
        if not self.use_cpu_partial:             # CONFIG_SLUB_CPU_PARTIAL=n
            geo = attrs.evolve(geo, cpu_partial=0, cpu_partial_slabs=0)
        c = SlubCache(name, geo, kind, [KmemCacheCpu() for _ in range(self.ncpus)], ctor=ctor)
        self.caches.append(c)
        return c

    def find_mergeable(self, size: int, align: int, flags: int, ctor) -> SlubCache | None:
        """slab_common.c find_mergeable: the oldest cache that is mergeable (no never-merge
        flag, no ctor; kalloc's caches have no usersize), as large, with the same
        SLAB_MERGE_SAME flags, aligned for ``align`` and less than a word larger."""
        if not self.merge or ctor is not None or flags & SLAB_NEVER_MERGE:
            return None
        size = align_up(size, self.ptr)
        align = calculate_alignment(flags, align, size, self.ptr)
        size = align_up(size, align)
        for s in self.caches:                    # list_for_each_entry_reverse: oldest first
            g = s.geo
            if (g.flags & SLAB_NEVER_MERGE or s.ctor is not None or size > g.size
                    or flags & SLAB_MERGE_SAME != g.flags & SLAB_MERGE_SAME
                    or g.size & ~(align - 1) != g.size or g.size - size >= self.ptr):
                continue
            return s
        return None

    # --- malloc ---------------------------------------------------------------------------------
    def malloc(self, size, mtype, flags=2, cpu=0):
        """kmalloc (PER-CPU: this_cpu_cmpxchg on the CPU slab's freelist; MAY SLEEP in the page
        allocator without M_NOWAIT).  kalloc's flags carry no GFP zone bits: the NORMAL kind
        (``malloc_gfp`` takes Linux GFP bits and picks the kind)."""
        try:
            f = FLAG_INT[flags]
        except (KeyError, TypeError):
            f = -1
        if (f < 0 or size.__class__ is not int or size < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or flags.__class__ is not int and flags.__class__ is not MallocFlags):
            size, f = check_args(size, flags, cpu, self.ncpus)
        return self._kmalloc_node(size, mtype, f, cpu, KMALLOC_NORMAL)

    def malloc_gfp(self, size, mtype, gfp: int, flags=2, cpu=0):
        """kmalloc with the Linux GFP bits that choose the kmalloc kind (kmalloc_type);
        ``flags`` are the malloc(9) flags the same GFP maps to (kalloc_compat.linux)."""
        size, f = check_args(size, flags, cpu, self.ncpus)
        if gfp.__class__ is not int or gfp < 0:
            raise TypeError(f"malloc_gfp: gfp must be a non-negative int, not {gfp!r}")
        return self._kmalloc_node(size, mtype, f, cpu, kmalloc_type(gfp))

    def _charge(self, size: int, mtype, f: int, cpu: int) -> bool:
        """The type's call, and kalloc's type limit (Linux has none; memcg's is counted, not
        enforced): False when a call that may fail fails, a sleep otherwise."""
        try:
            if mtype._k is not self.kernel:
                self.kernel.bind_type(mtype)
        except AttributeError:
            self.kernel.bind_type(mtype)
        mtype.calls += 1
        if mtype.memuse >= mtype.limit:
            if f & MAY_FAIL:
                return False
            mtype.calls -= 1                     # a sleep changes nothing: its retry counts
            raise Deadlock(f"kmalloc({size}, '{mtype.name}', {flag_names(f)}) on cpu {cpu} sleeps on "
                           f"'{mtype.name}': malloc limit {mtype.limit} reached", mtype)
        return True

    def _hand_out(self, va: int, owner, mtype, n: int) -> int:
        """The object is live: the always-on check's entry (its MallocType, or its Cache) and
        the type's counters."""
        self.live[va] = owner
        mtype.inuse += 1
        memuse = mtype.memuse + n
        mtype.memuse = memuse
        if memuse > mtype.maxused:
            mtype.maxused = memuse
        return va

    def _kmalloc_node(self, size: int, mtype, f: int, cpu: int, kind: int):
        if not self._charge(size, mtype, f, cpu):
            return None
        if size == 0:
            return ZERO_SIZE_PTR                 # no memory, no counters but calls
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self._kmalloc_large(size, mtype, f, cpu)
        s = self._kmalloc[size] if kind == KMALLOC_NORMAL else self.kmalloc_caches[kind][kmalloc_index(size)]
        va = self._slab_alloc(s, f, cpu, size, mtype)
        if va is None:
            return None
        n = s.geo.size
        if f & ZERO:
            self.vm.zero(va, n)                  # slab_post_alloc_hook's memset (__GFP_ZERO)
        return self._hand_out(va, mtype, mtype, n)

    def _slab_alloc(self, s: SlubCache, f: int, cpu: int, size, mtype):
        """slab_alloc_node: the lockless fast path, else ___slab_alloc."""
        c = s.cpus[cpu]
        fl = c.freelist
        if fl:
            va = fl.pop()
            self.crit_sections += 1              # this_cpu_cmpxchg_double(freelist, tid)
            slab = c.slab
        else:
            va = self._slab_alloc_slow(s, c, f, cpu, size, mtype)
            if va is None:
                return None
            slab = c.slab
        if va >= slab.fresh:                     # first use of this object: its line is cold
            slab.fresh = va + s.geo.size
            self.cold_allocs += 1
        s.allocated += 1
        return va

    def _slab_alloc_slow(self, s: SlubCache, c: KmemCacheCpu, f: int, cpu: int, size, mtype):
        """___slab_alloc under local_lock: the CPU slab's remote frees (get_freelist), then the
        per-CPU partial slabs, then get_partial_node under list_lock, then new_slab."""
        self.crit_sections += 1                  # local_lock_irqsave(&s->cpu_slab->lock)
        slab = c.slab
        if slab is not None:
            if self.touch is not None:
                self.touch(slab, cpu)            # cmpxchg on struct slab: remote frees wrote it
            if slab.freelist:
                return self._load(c, slab)
            slab.frozen = -1                     # full: unfrozen, on no list
            c.slab = None
        while c.partial:                         # slub_percpu_partial
            slab = c.partial.pop()
            slab.where, slab.cpu = NOWHERE, -1
            if self.touch is not None:
                self.touch(slab, cpu)
            c.slab = slab
            slab.frozen = cpu
            return self._load(c, slab)
        slab = self._get_partial_node(s, cpu)
        if slab is None:
            slab = self._new_slab(s, f, cpu, size, mtype)
            if slab is None:
                return None
        if self.touch is not None:
            self.touch(slab, cpu)                # freeze_slab / new_slab write struct slab
        c.slab = slab
        slab.frozen = cpu
        return self._load(c, slab)

    @staticmethod
    def _load(c: KmemCacheCpu, slab: Slab) -> int:
        """load_freelist: the slab's freelist becomes the CPU's, all its objects count in use."""
        c.freelist, slab.freelist = slab.freelist, []
        slab.inuse = slab.objects
        return c.freelist.pop()

    def _get_partial_node(self, s: SlubCache, cpu: int):
        """get_partial_node: nothing without n->nr_partial (a lockless test); else under
        list_lock the first slab for the CPU and more onto its partial list until there are
        more than cpu_partial_slabs / 2 of them."""
        n = s.partial
        if not n:
            return None
        self.lock_acquires += 1                  # spin_lock_irqsave(&n->list_lock)
        self.list_lock_takes += 1
        first = None
        taken = 0
        limit = s.geo.cpu_partial_slabs
        for slab in list(n):
            del n[slab]
            slab.where = NOWHERE
            if first is None:
                first = slab
                if limit == 0:
                    break
            else:
                self._put_cpu_partial(s, slab, cpu, False)
                taken += 1
                if taken > limit // 2:
                    break
        return first

    def _new_slab(self, s: SlubCache, f: int, cpu: int, size, mtype):
        """allocate_slab: 2^oo_order pages (__GFP_NORETRY), else 2^s->min pages; all objects
        on the slab's freelist in address order.  No pages: NULL for M_NOWAIT, else vm_wait."""
        g = s.geo
        for order in dict.fromkeys((g.order, g.min_order)):
            va = self._alloc_pages(order, f)
            if va is not None:
                break
        else:
            if f & MAY_FAIL:
                return None
            mtype.calls -= 1                     # retried after the sleep
            raise Deadlock(f"kmalloc({size}, '{mtype.name}', {flag_names(f)}) on cpu {cpu} sleeps on "
                           f"\"vmwait\": new_slab({s.name}, order {g.order}) is short of pages "
                           f"({self.machine.free_count} free)", "vmwait")
        objects = order_objects(order, g.size)
        sz = g.size
        slab = Slab(va, s, order, objects, list(range(va + (objects - 1) * sz, va - 1, -sz)), 0, -1,
                    NOWHERE, -1, va)
        ps = self.page_slab
        for pg in range(va >> PAGE_SHIFT, (va >> PAGE_SHIFT) + (1 << order)):
            ps[pg] = slab
        if s.ctor is not None:                   # setup_object: every object, once
            for obj in range(va, va + objects * sz, sz):
                s.ctor(self.kernel, obj)
        s.nr_slabs += 1
        s.total_objects += objects
        self.slabs_allocated += 1
        self.crit_sections += 1                  # the page allocator's per-CPU lists
        return slab

    def _alloc_pages(self, order: int, f: int):
        """alloc_pages: 2^order pages, naturally aligned (the buddy allocator's blocks are)."""
        n = PAGE_SIZE << order
        km = self.vm.kernel_map
        va = km.findspace(n, n)
        if va is None:
            return None
        pclass = VM_ALLOC_INTERRUPT if f & (NOWAIT | USE_RESERVE) == NOWAIT else VM_ALLOC_SYSTEM
        if self.vm.map_pages(va, 1 << order, pclass, (va - self.machine.arch.kva_min) >> PAGE_SHIFT):
            return va
        km.remove(va, n)
        return None

    def _free_pages(self, va: int, order: int) -> None:
        """__free_pages: back to the page allocator; the direct map needs no TLB shootdown."""
        self.vm.unmap_pages(va, 1 << order, shootdown=False)
        self.vm.kernel_map.remove(va, PAGE_SIZE << order)

    def _kmalloc_large(self, size: int, mtype, f: int, cpu: int):
        """kmalloc_large: alloc_pages(__GFP_COMP, get_order(size)); __GFP_ZERO zeroes the pages."""
        if size > KMALLOC_MAX_SIZE:
            if f & MAY_FAIL:
                return None
            raise KernelPanic(f"kmalloc({size}): order {get_order(size)} > MAX_PAGE_ORDER {MAX_PAGE_ORDER}: "
                              f"Linux warns and returns NULL, which a M_WAITOK caller cannot take")
        order = get_order(size)
        va = self._alloc_pages(order, f)
        if va is None:
            if f & MAY_FAIL:
                return None
            mtype.calls -= 1
            raise Deadlock(f"kmalloc({size}, '{mtype.name}', {flag_names(f)}) on cpu {cpu} sleeps on "
                           f"\"vmwait\": kmalloc_large order {order} is short of pages "
                           f"({self.machine.free_count} free)", "vmwait")
        if f & ZERO:
            self.vm.zero(va, PAGE_SIZE << order)
        self.large[va] = order
        self.large_freed.discard(va)
        self.crit_sections += 1
        self.cold_allocs += 1
        self.live[va] = mtype
        n = PAGE_SIZE << order
        mtype.inuse += 1
        mtype.memuse += n
        mtype.maxused = max(mtype.maxused, mtype.memuse)
        return va

    # --- free -----------------------------------------------------------------------------------
    def free(self, addr, mtype, cpu=0):
        """kfree (PER-CPU; never sends an IPI): to the CPU slab's lockless freelist, else
        __slab_free on the object's slab; a kmalloc_large block back to the page allocator."""
        live = self.live
        try:
            slab = self.page_slab.get(addr >> PAGE_SHIFT)
        except TypeError:
            return self._free_unusual(addr, mtype, live, cpu)
        t = live.pop(addr, live)
        if (t is not mtype or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or addr.__class__ is not int):
            return self._free_unusual(addr, mtype, t, cpu)
        if mtype._k is not self.kernel:
            self.kernel.bind_type(mtype)
        mtype.inuse -= 1
        if slab is None:
            order = self.large.pop(addr)
            mtype.memuse -= PAGE_SIZE << order
            self.crit_sections += 1
            self._free_pages(addr, order)
            self.large_freed.add(addr)
            return None
        mtype.memuse -= slab.cache.geo.size
        return self._free_object(slab, addr, cpu)

    def _free_object(self, slab: Slab, addr: int, cpu: int) -> None:
        """do_slab_free: the CPU slab's lockless freelist, else __slab_free."""
        s = slab.cache
        s.allocated -= 1
        c = s.cpus[cpu]
        if slab is c.slab:                       # do_slab_free's fast path
            c.freelist.append(addr)
            self.crit_sections += 1
            return None
        return self._slab_free(s, slab, addr, cpu)

    def _slab_free(self, s: SlubCache, slab: Slab, addr: int, cpu: int) -> None:
        """__slab_free: cmpxchg_double on the slab's freelist and counters; list work only
        when the slab was full or becomes empty and is not frozen."""
        if self.take is not None and self.take(slab, cpu):
            self.remote_cas += 1                 # cmpxchg16b on struct slab, a line another CPU wrote
        else:
            self.crit_sections += 1              # the same on the CPU's own line (no lock prefix on UP)
        prior = bool(slab.freelist)
        slab.freelist.append(addr)
        slab.inuse -= 1
        if slab.frozen >= 0:                     # FREE_FROZEN: another CPU's CPU slab
            if slab.frozen != cpu:
                self.remote_frees += 1
            return None
        if slab.where == CPU_PARTIAL and slab.cpu != cpu:
            self.remote_frees += 1
        cpu_partial = s.geo.cpu_partial_slabs > 0
        if not ((slab.inuse == 0 or not prior) and (not cpu_partial or prior)):
            if cpu_partial and not prior:
                self._put_cpu_partial(s, slab, cpu, True)   # CPU_PARTIAL_FREE
            return None
        self.lock_acquires += 1                  # n->list_lock
        self.list_lock_takes += 1
        on_node = slab.where == NODE_PARTIAL
        if prior and not on_node:                # on some CPU's partial list: leave it there
            return None
        if slab.inuse == 0 and len(s.partial) >= s.geo.min_partial:
            if prior:
                del s.partial[slab]
                slab.where = NOWHERE
            self._discard_slab(s, slab)
            return None
        if not cpu_partial and not prior:
            s.partial[slab] = None               # add_partial(DEACTIVATE_TO_TAIL)
            slab.where = NODE_PARTIAL
        return None

    def _put_cpu_partial(self, s: SlubCache, slab: Slab, cpu: int, drain: bool) -> None:
        """put_cpu_partial: push on this CPU's partial list; when draining and the list holds
        cpu_partial_slabs already, the old list goes to the node (__put_partials)."""
        self.crit_sections += 1                  # local_lock_irqsave
        pl = s.cpus[cpu].partial
        to_put = None
        if pl and drain and len(pl) >= s.geo.cpu_partial_slabs:
            to_put = pl[::-1]                    # from the newest, following slab->next
            pl.clear()
        pl.append(slab)
        slab.where, slab.cpu = CPU_PARTIAL, cpu
        if to_put:
            self._put_partials(s, to_put, cpu)

    def _put_partials(self, s: SlubCache, slabs: list, cpu: int) -> None:
        """__put_partials: under list_lock each slab goes to the node's partial tail, or,
        wholly free while the node holds min_partial, back to the page allocator."""
        self.lock_acquires += 1
        self.list_lock_takes += 1
        discard = []
        for slab in slabs:
            slab.where, slab.cpu = NOWHERE, -1
            if slab.inuse == 0 and len(s.partial) >= s.geo.min_partial:
                discard.append(slab)
            else:
                s.partial[slab] = None
                slab.where = NODE_PARTIAL
        for slab in discard:
            self._discard_slab(s, slab)

    def _discard_slab(self, s: SlubCache, slab: Slab) -> None:
        """discard_slab -> free_slab: the pages back to the page allocator."""
        ps = self.page_slab
        first = slab.base >> PAGE_SHIFT
        for pg in range(first, first + (1 << slab.order)):
            del ps[pg]
        s.nr_slabs -= 1
        s.total_objects -= slab.objects
        self.slabs_freed += 1
        self._free_pages(slab.base, slab.order)

    def _free_unusual(self, addr, mtype, popped, cpu) -> None:
        """The live entry put back; then a bad CPU, NULL and ZERO_SIZE_PTR (no-ops, as kfree's
        ZERO_OR_NULL_PTR test), or a bad free (always caught)."""
        if popped is not self.live:
            self.live[addr] = popped
        if cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            check_args(0, 2, cpu, self.ncpus, "free")
        if addr.__class__ is int and (addr == 0 or addr == ZERO_SIZE_PTR):
            return None
        if addr is None:
            return None
        raise bad_free(self, addr, mtype, self.live)

    # --- realloc and sizes ----------------------------------------------------------------------
    def realloc(self, addr, size, mtype, flags=2, cpu=0):
        """krealloc: NULL/ZERO_SIZE_PTR is kmalloc; size 0 frees (kalloc's realloc then returns
        NULL); the same pointer while ksize() covers the new size; else kmalloc, copy, kfree."""
        size, f = self._realloc_args(size, flags, cpu)
        if addr is None or (addr.__class__ is int and addr in (0, ZERO_SIZE_PTR)):
            return self.malloc(size, mtype, f, cpu)
        self._realloc_owned(addr, mtype)
        if size == 0:
            self.free(addr, mtype, cpu)
            return None
        old = self.usable_size(addr)
        if size <= old:
            return addr
        return self._realloc_move(addr, old, size, mtype, f, cpu)

    def usable_size(self, addr) -> int:
        """ksize(): slab_ksize of the object's cache, or the pages of a kmalloc_large block."""
        if addr.__class__ is not int or addr not in self.live:
            if addr.__class__ is int and addr == ZERO_SIZE_PTR:
                return 0
            raise bad_free(self, addr, None, self.live, "usable_size")
        slab = self.page_slab.get(addr >> PAGE_SHIFT)
        if slab is not None:
            return slab.cache.geo.ksize
        return PAGE_SIZE << self.large[addr]

    def was_chunk(self, addr: int) -> bool:
        if addr.__class__ is not int:
            return False
        slab = self.page_slab.get(addr >> PAGE_SHIFT)
        if slab is not None:
            rel = addr - slab.base
            return rel % slab.cache.geo.size == 0 and addr < slab.fresh
        return addr in self.large_freed and not self.vm.kernel_map.is_allocated(addr, PAGE_SIZE)

    # --- object caches (kalloc.cache), natively -----------------------------------------------
    def cache_init(self, cache) -> None:
        """__kmem_cache_create_args: an alias of a mergeable cache (__kmem_cache_alias grows
        its object_size), else a new kmem_cache by calculate_sizes."""
        s = None if self.sheaves else self.find_mergeable(cache.object_size, cache.align, cache.flags, cache.ctor)
        if s is not None:
            s.refcount += 1
            s.aliases.append(cache.name)
            g = s.geo
            s.geo = attrs.evolve(g, object_size=max(g.object_size, cache.object_size),
                                 inuse=max(g.inuse, align_up(cache.object_size, self.ptr)))
        else:
            s = self.create_cache(cache.name, cache.object_size, cache.align, cache.flags, cache.ctor,
                                  sheaf_capacity=self.sheaves)
            if s.geo.sheaf_capacity:             # init_percpu_sheaves: an empty main sheaf per CPU
                s.pcs = []
                for cpu in range(self.ncpus):
                    main = self._sheaf_new(s, cpu)
                    if main is None:
                        raise KernelPanic(f"kmem_cache_create({cache.name}): no memory for its sheaves")
                    s.pcs.append(PercpuSheaves(main))
        cache.impl = s

    def cache_alloc(self, cache, flags=2, cpu=0):
        """kmem_cache_alloc (PER-CPU): slab_alloc_node on the cache's kmem_cache; __GFP_ZERO
        clears object_size bytes (slab_post_alloc_hook)."""
        f = FLAG_INT.get(flags, -1) if flags.__class__ is int or flags.__class__ is MallocFlags else -1
        if f < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            _, f = check_args(0, flags, cpu, self.ncpus, "cache_alloc")
        if cache.__class__ is not Cache or cache.destroyed or cache.kernel is not self.kernel:
            check_cache(self.kernel, cache, "cache_alloc")
        mtype = cache.mtype
        s = cache.impl
        if not self._charge(cache.object_size, mtype, f, cpu):
            return None
        va = self._alloc_from_pcs(s, f, cpu, mtype) if s.pcs is not None else None
        if va is None:
            va = self._slab_alloc(s, f, cpu, cache.object_size, mtype)
            if va is None:
                return None
        if f & ZERO:
            self.vm.zero(va, cache.object_size)
        cache.live.add(va)
        return self._hand_out(va, cache, mtype, s.geo.size)

    def cache_free(self, cache, addr, cpu=0) -> None:
        """kmem_cache_free (PER-CPU, no IPI): cache_from_obj's check, then do_slab_free."""
        if cache.__class__ is not Cache or cache.destroyed or cache.kernel is not self.kernel:
            check_cache(self.kernel, cache, "cache_free")
        live = self.live
        if addr.__class__ is not int or live.get(addr) is not cache:
            raise cache_misuse(self.kernel, cache, addr)
        if cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            check_args(0, 2, cpu, self.ncpus, "cache_free")
        del live[addr]
        cache.live.remove(addr)
        slab = self.page_slab[addr >> PAGE_SHIFT]
        mtype = cache.mtype
        mtype.inuse -= 1
        mtype.memuse -= slab.cache.geo.size
        s = slab.cache
        if s.pcs is not None:
            self._free_to_pcs(s, addr, cpu)
        else:
            self._free_object(slab, addr, cpu)

    # --- sheaves (6.18: opt-in per-CPU arrays of objects in front of the CPU slab) ----------------
    def _sheaf_new(self, s: SlubCache, cpu: int) -> Sheaf | None:
        """alloc_empty_sheaf: kzalloc(struct slab_sheaf + capacity pointers, GFP_NOWAIT)."""
        if self.sheaf_type is None:
            self.sheaf_type = self.kernel.malloc_type("slab_sheaf", "struct slab_sheaf (slub's sheaves)")
        va = self._kmalloc_node(SHEAF_HEADER + s.geo.sheaf_capacity * self.ptr, self.sheaf_type,
                                NOWAIT | ZERO, cpu, KMALLOC_NORMAL)
        return None if va is None else Sheaf(va)

    def _sheaf_free(self, sheaf: Sheaf, cpu: int) -> None:
        """free_empty_sheaf: kfree."""
        self.free(sheaf.va, self.sheaf_type, cpu)

    def _barn_lock(self) -> None:
        """spin_lock_irqsave(&barn->lock): the node's lock every CPU takes."""
        self.lock_acquires += 1

    def _alloc_from_pcs(self, s: SlubCache, f: int, cpu: int, mtype):
        """alloc_from_pcs under the CPU's local_trylock: the main sheaf's top object; an empty
        main is replaced by the spare, a full sheaf of the barn, or a sheaf refilled from the
        slabs (__pcs_replace_empty_main).  None: the caller takes the CPU slab's path."""
        self.crit_sections += 1
        pcs = s.pcs[cpu]
        if not pcs.main.objects and not self._replace_empty_main(s, pcs, f, cpu, mtype):
            return None
        return pcs.main.objects.pop()

    def _replace_empty_main(self, s: SlubCache, pcs: PercpuSheaves, f: int, cpu: int, mtype) -> bool:
        spare = pcs.spare
        if spare is not None and spare.objects:
            pcs.main, pcs.spare = spare, pcs.main
            return True
        if s.barn_full:                          # barn_replace_empty_sheaf (nr_full read first, unlocked)
            self._barn_lock()
            s.barn_empty.append(pcs.main)
            pcs.main = s.barn_full.pop()
            return True
        sheaf, pcs.spare = spare, None           # refill the empty spare, or a new sheaf
        if sheaf is None:
            sheaf = self._sheaf_new(s, cpu)
            if sheaf is None:
                return False
        self._refill(s, sheaf, f, cpu, mtype)
        if not sheaf.objects:                    # the slabs gave nothing: keep it, take the slow path
            pcs.spare = sheaf
            return False
        if pcs.spare is None:                    # the empty main becomes the spare
            pcs.spare = pcs.main
        else:
            self._barn_lock()
            s.barn_empty.append(pcs.main)
        pcs.main = sheaf
        return True

    def _refill(self, s: SlubCache, sheaf: Sheaf, f: int, cpu: int, mtype) -> None:
        """refill_sheaf: objects from the slabs (__kmem_cache_alloc_bulk, here one slab_alloc
        each) until the sheaf is full or the slabs cannot give more without sleeping."""
        f = f | NULLOK
        objects = sheaf.objects
        for _ in range(s.geo.sheaf_capacity - len(objects)):
            va = self._slab_alloc(s, f, cpu, s.geo.object_size, mtype)
            if va is None:
                break
            objects.append(va)
        objects.reverse()                        # the first allocated on top, as the bulk array is popped

    def _free_to_pcs(self, s: SlubCache, addr: int, cpu: int) -> None:
        """free_to_pcs under the freeing CPU's local_trylock: onto its main sheaf, whichever
        CPU allocated the object (no remote cmpxchg); a full main is replaced first
        (__pcs_replace_full_main)."""
        self.crit_sections += 1
        pcs = s.pcs[cpu]
        cap = s.geo.sheaf_capacity
        if len(pcs.main.objects) >= cap:
            self._replace_full_main(s, pcs, cap, cpu)
        pcs.main.objects.append(addr)

    def _replace_full_main(self, s: SlubCache, pcs: PercpuSheaves, cap: int, cpu: int) -> None:
        """An empty main sheaf in place of the full one: the spare if it has room, an empty
        sheaf of the barn (the full one goes there, up to MAX_FULL_SHEAVES), a new one; with
        the barn full, the full spare is flushed to the slabs and reused; with no memory for
        a sheaf, the main is flushed (sheaf_flush_main)."""
        spare = pcs.spare
        if spare is not None and len(spare.objects) < cap:
            pcs.main, pcs.spare = spare, pcs.main
            return
        if spare is not None and len(s.barn_full) >= MAX_FULL_SHEAVES:     # -E2BIG
            pcs.spare = None
            self._flush(spare, cpu)
            pcs.main, pcs.spare = spare, pcs.main
            return
        if s.barn_empty:                         # barn_get_empty_sheaf / barn_replace_full_sheaf
            self._barn_lock()
            empty = s.barn_empty.pop()
            if spare is None:
                pcs.spare = pcs.main
            else:
                s.barn_full.append(pcs.main)
            pcs.main = empty
            return
        empty = self._sheaf_new(s, cpu)
        if empty is None:
            self._flush(pcs.main, cpu)
            return
        if spare is None:                        # __pcs_install_empty_sheaf
            pcs.spare = pcs.main
        else:
            self._barn_lock()
            s.barn_full.append(pcs.main)
        pcs.main = empty

    def _flush(self, sheaf: Sheaf, cpu: int) -> None:
        """sheaf_flush_unused / sheaf_flush_main: every object back to its slab
        (__kmem_cache_free_bulk, here one do_slab_free each)."""
        ps = self.page_slab
        for addr in sheaf.objects:
            self._free_object(ps[addr >> PAGE_SHIFT], addr, cpu)
        sheaf.objects.clear()

    def cache_was_object(self, cache, addr: int) -> bool:
        slab = self.page_slab.get(addr >> PAGE_SHIFT)
        return slab is not None and slab.cache is cache.impl and self.was_chunk(addr)

    def cache_fini(self, cache) -> None:
        """kmem_cache_destroy: one reference less; the last one flushes the CPU slabs and
        partial lists (flush_all, __kmem_cache_shutdown) and frees every slab."""
        s = cache.impl
        s.refcount -= 1
        if cache.name in s.aliases:
            s.aliases.remove(cache.name)
        if s.refcount:
            return
        if s.pcs is not None:                    # pcs_flush_all, barn_shrink, pcs_destroy
            sheaves = [sh for pcs in s.pcs for sh in (pcs.main, pcs.spare) if sh is not None]
            for sheaf in sheaves + s.barn_full + s.barn_empty:
                self._flush(sheaf, 0)
                self._sheaf_free(sheaf, 0)
            s.pcs = None
            s.barn_full.clear()
            s.barn_empty.clear()
        slabs = list(s.partial)
        s.partial.clear()
        for c in s.cpus:
            slabs += c.partial
            if c.slab is not None:
                slabs.append(c.slab)
            c.freelist, c.slab, c.partial = [], None, []
        for slab in slabs:
            self._discard_slab(s, slab)
        self.caches.remove(s)

    def cache_row(self, cache) -> dict:
        return {**self.kmem_cache_row(cache.impl), "name": cache.name}

    # --- reports --------------------------------------------------------------------------------
    def slabinfo_rows(self) -> list:
        """/proc/slabinfo's fields per cache (get_slabinfo: active_objs counts everything
        but the free objects of the node's partial slabs)."""
        rows = []
        for s in reversed(self.caches):          # slab_caches is printed from the newest
            g = s.geo
            nfree = sum(len(sl.freelist) for sl in s.partial)
            rows.append({"name": s.name, "active_objs": s.total_objects - nfree, "num_objs": s.total_objects,
                         "objsize": g.size, "objperslab": g.objects, "pagesperslab": 1 << g.order,
                         "active_slabs": s.nr_slabs, "num_slabs": s.nr_slabs})
        return rows

    def slabinfo(self) -> str:
        """/proc/slabinfo, version 2.1, as slabinfo_show prints it."""
        out = ["slabinfo - version: 2.1",
               "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables "
               "<limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>"]
        for r in self.slabinfo_rows():
            out.append(f"{r['name']:<17} {r['active_objs']:6} {r['num_objs']:6} {r['objsize']:6} "
                       f"{r['objperslab']:4} {r['pagesperslab']:4} : tunables {0:4} {0:4} {0:4} : slabdata "
                       f"{r['active_slabs']:6} {r['num_slabs']:6} {0:6}")
        return "\n".join(out)

    @staticmethod
    def kmem_cache_row(s: SlubCache) -> dict:
        """/sys/kernel/slab's view of one kmem_cache (an alias shows its merged cache's)."""
        g = s.geo
        return {"name": s.name, "object_size": g.object_size, "slab_size": g.size, "align": g.align,
                "objs_per_slab": g.objects, "order": g.order, "active_objs": s.allocated,
                "num_objs": s.total_objects, "active_slabs": s.nr_slabs, "num_slabs": s.nr_slabs,
                "cpu_partial": g.cpu_partial, "min_partial": g.min_partial, "sheaf_capacity": g.sheaf_capacity,
                "aliases": len(s.aliases)}

    def classes(self) -> list:
        """The kmalloc caches, kind by kind, in the class row shape (plus name and kind)."""
        rows = []
        for kind, caches in enumerate(self.kmalloc_caches):
            for s in caches:
                if s is None:
                    continue
                g = s.geo
                rows.append({"size": g.size, "objs_per_slab": g.objects, "slab_bytes": PAGE_SIZE << g.order,
                             "first_offset": 0, "inuse": s.allocated, "free": s.total_objects - s.allocated,
                             "slabs": s.nr_slabs, "name": s.name, "kind": KMALLOC_KINDS[kind]})
        return rows

    def extra_stats(self) -> dict:
        return {"slub": {
            "min_objects": min_objects_for(self.ncpus) if not self.min_objects else self.min_objects,
            "max_order": self.max_order, "caches": len(self.caches),
            "slabs_allocated": self.slabs_allocated, "slabs_freed": self.slabs_freed,
            "list_lock_takes": self.list_lock_takes,
            "large_live": len(self.large), "large_pages": sum(1 << o for o in self.large.values()),
            "node_partial_slabs": sum(len(s.partial) for s in self.caches),
            "barn_sheaves": sum(len(s.barn_full) + len(s.barn_empty) for s in self.caches),
            "cpu_partial_slabs": sum(len(c.partial) for s in self.caches for c in s.cpus)}}

    def info_tables(self) -> list:
        """For ``kalloc info``: /proc/slabinfo as the kernel prints it, then the geometry."""
        return [("/proc/slabinfo", self.slabinfo()),
                ("slub", [self.extra_stats()["slub"]])]


@hookimpl
def kalloc_backends():
    return [SlubBackend]
