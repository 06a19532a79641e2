"""``slab``: DragonFly BSD's per-CPU slab allocator, kern_slaballoc.c 1.2 (2003-08-27).

Deterministic: the same calls give the same addresses, byte for byte.  Source:
docs/research/slab.md (the digest of kern_slaballoc.c 1.1/1.2 and slaballoc.h 1.1/1.2, section
numbers below are its sections).  Later DragonFly improvements are options, each off by
default and dated (docs/slab.md).

The data structures (sections 2.3, 3.1)
---------------------------------------
Each CPU owns an ``SLGlobalData``: ``ZoneAry[72]``, one singly linked list per zone index
of *its* zones that have a free chunk, and ``FreeZones``, wholly free zones kept for reuse
(``NFreeZones`` of them, at most ZONE_RELS_THRESH = 2).  malloc and a free of one's own
memory take no lock, only a critical section (counted in ``crit_sections``).  A zone is
ZoneSize bytes of kernel_map (32, 64 or 128 KiB, 1/1024 of RAM, global) *aligned to
ZoneSize*, so the in-band header of the zone holding any chunk is ``ptr & ~ZoneMask``::

    zone (ZoneSize, ZoneSize-aligned)        ZoneAry[zi] of cpu 1: head -> z3 -> z1 -> NULL
    +---------------+----+----+----+----+- ... -+----+----------+------------+
    | SLZone header |gap | c0 | c1 | c2 |       |cN-1| never-used | tail waste |
    | 164/168 bytes |    |    |    |    |       |    | ^ z_UAlloc |            |
    +---------------+----+----+----+----+- ... -+----+----------+------------+
    ^ z = ptr & ~ZoneMask  ^ first chunk at ``off`` (header rounded to 8, or to the chunk
                             size for a power of two: 2048-byte chunks start at 2048)
    z_PageAry[pg]: a LIFO of the free chunks that *start* in page pg of the zone;
    z_FirstFreePg: the lowest page whose list may be non-empty (a lazy lower bound),
    so chunks in low pages are reused first; never-used chunks come from z_UAlloc.

z_NFree counts free-list and never-used chunks.  When it reaches 0 in malloc the zone
leaves ZoneAry (allocation is always from the head); the first free pushes it back at the
head; a wholly free zone that is not the last of its size on ZoneAry goes to FreeZones
(magic -1).  Large requests (>= ZoneLimit 16384, and every multiple of PAGE_SIZE) take their
own pages from kmem_slab_alloc, page-aligned, the page count recorded in ``kmemusage``.

Size classes: zoneindex() (section 1.2), 72 zones for ZoneLimit 16384::

    request     chunking  chunk sizes        zones   NMax at 32K / 64K / 128K (first, last)
    1..127      8         8 .. 128           0-15    4075 / 8171 / 16363 .. 254 / 510 / 1022
    128..255    16        128 .. 256         15-23
    256..511    32        256 .. 512         23-31
    512..1023   64        512 .. 1024        31-39
    1024..2047  128       1024 .. 2048       39-47
    2048..4095  256       2048 .. 4096       47-55   (4096: kmem)
    4096..8191  512       4096 .. 8192       55-63   (8192: kmem)
    8192..16383 1024      8192 .. 16384      63-71   (12288: kmem; 71: 1 / 3 / 7 chunks)
    >= 16384    pages     round_page(n)      kmem    page-aligned, ku_pagecnt

Worst-case overhead: a request just above a band start wastes 1/8 of its chunk (8193 bytes
take 9216), the first band more (9 bytes take 16).  Per zone, the header gap and tail waste:
the 16384-byte zone wastes its first 16 KiB (half of a 32K zone), the 9216-byte zone 5120
bytes of a 32K zone.  Every size class a CPU has used keeps one zone even when empty, so
the worst case is 72 x ZoneSize per CPU (9 MiB at 128K), plus 2 free zones per CPU.  A large
block wastes up to 4095 bytes of its last page.

Cross-CPU free (section 4.1): a free of a chunk whose zone another CPU owns is an IPI to the
owner, which does the free and the accounting (``remote_frees``; the machine counts the IPI).
Knob ``remote_free="passive"`` (2010-09-18, section 8): the chunk is pushed on the zone's
RChunks by compare-and-swap (``remote_cas``), accounting on the freeing CPU, and a passive
IPI goes only when the owner flagged z_RSignal and RChunks goes from empty to non-empty.

M_ZERO (section 3.3): new zones are allocated with M_ZERO (page level), so never-used chunks
are zero and are not zeroed again; a zone reused from FreeZones has only its header zeroed
and, since 1.2, SLZF_UNOTZEROD, so its never-used chunks are zeroed on M_ZERO.  Option
``mzero_bug=True`` is rev 1.1 (header 164 bytes, no SLZF_UNOTZEROD): M_ZERO can return dirty
memory.  Page classes (section 5.1): the 2003 VM_ALLOC_* are states, and kmem_slab_alloc ORs
VM_ALLOC_ZERO into them, so every M_ZERO request (every new zone) is VM_ALLOC_ZERO; the page
policy decides which physical pages that takes (the ISA DMA regression of section 7).

Deviations and gaps (also in docs/slab.md):
  * Free lists, RChunks and the zone header fields are out of band (Python lists and a
    ``Zone`` object per zone base): no link word is written into a free chunk, and a remote
    free does not write the type pointer into the chunk's first word.  The header's bytes are
    reserved (the first-chunk offset) and zeroed where the original zeroes them.
  * ``kmemusage`` is a dict page index -> ku_pagecnt; on i386 its 1.0 MB array (255 pages)
    is allocated at boot all the same.  On amd64 the 2010 design is used (ku_pagecnt in
    struct vm_page, no array): a 4-byte entry per page of a 512 GiB kernel map would be 512 MiB.
  * No page is ever PG_ZERO (kalloc has no idle page zeroing), so M_ZERO pages are always
    zeroed by kmem_slab_alloc.  There is no contention for kernel_map's lock, so the
    ``lockstatus`` test of the 1.1 trimming is always 0; kmem_slab_alloc/free count one
    ``lock_acquires`` each (vm_map_lock of kernel_map).
  * ks_maxused is kept (kalloc's high-water mark); the original never updated it.
  * Where the original corrupts itself -- ZoneSize 32K with the constant limit 16384, zone
    71 holds one chunk and stays on ZoneAry when full (section 2.4) -- kalloc panics with an
    explanation: at the next malloc of that size (1.1 hands out memory past the zone) and at
    the first free (1.1 links the zone to itself and puts it on FreeZones while ZoneAry still
    points to it).  free(NULL) panics too (1.1 indexes kmemusage out of range).
  * realloc's Bug A (zoneindex on sizes >= 16384 panics, until 2009-04-22) is off unless
    ``realloc_bug``; Bug B (M_ZERO passed through) is always there.
  * kalloc's always-on check catches double, wild and wrong-type frees before the code
    runs, so the DIAGNOSTIC "Double free at %p" heuristic and the BADFREE/FFPG panics cannot
    fire.  Under ``invariants`` freed memory gets the 0xdeadc0de fill (64 bytes at most) and
    the zone-71 case gives "assertion: z->z_NFree > 0 in malloc".
  * XXX: not modelled: the 2003-08-28 cache-colouring slide (JunkIndex), FreeOvZones and
    interrupt context (2003-10-02), per-CPU type statistics (2003-10-18), the recent
    TAILQ/LChunks layout, slab_cleanup's 10-second RChunks drain, the INVARIANTS bitmap.
"""

from __future__ import annotations

from functools import cache

from attrs import define, field

from kalloc.backends.base import Backend, Option, bad_free, check_args
from kalloc.errors import Deadlock, KernelPanic
from kalloc.flags import FLAG_INT, MAY_FAIL, NOWAIT, USE_RESERVE, ZERO, MallocFlags, flag_names
from kalloc.hookspecs import hookimpl
from kalloc.machine import ARCHES, VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM, VM_ALLOC_ZERO

# --- slaballoc.h 1.1/1.2 and kern_slaballoc.c 1.1 (section 1.1) -------------------------------
ZALLOC_ZONE_LIMIT = 16384             # requests >= this go to kmem (constant until 2003-10-02)
ZALLOC_MIN_ZONE_SIZE = 32768
ZALLOC_MAX_ZONE_SIZE = 131072
ZALLOC_SLAB_MAGIC = 0x736C6162        # "slab"
NZONES = 72                           # for ZALLOC_ZONE_LIMIT 16384 (80 only if it were 32768)
MIN_CHUNK_SIZE = 8
MIN_CHUNK_MASK = MIN_CHUNK_SIZE - 1
ZONE_RELS_THRESH = 2                  # free zones cached per CPU (32 since 2011-03-08)
SLZF_UNOTZEROD = 0x0001               # 1.2: never-used chunks of this zone are not zero
WEIRD_ADDR = 0xDEADC0DE               # INVARIANTS fill, weirdary[16] (int32): 64 bytes
MAX_COPY = 64
PAGE_SHIFT = 12                       # both kalloc arches have 4 KiB pages
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
KMEMUSAGE_SIZE = 4                    # sizeof(struct kmemusage) on i386
KU_PAGECNT_MAX = 65535                # ku_pagecnt is a u_short until 2010-02-09

# zoneindex() bands (section 1.2): (requests below, granularity, index offset).
BANDS = ((128, 8, -1), (256, 16, 7), (512, 32, 15), (1024, 64, 23), (2048, 128, 31),
         (4096, 256, 39), (8192, 512, 47), (16384, 1024, 55))

# struct SLZone (section 2.3): (field, C type, count); "p" is a pointer.
_SLZONE_1_1 = (("z_Magic", "i", 1), ("z_Cpu", "i", 1), ("z_NFree", "i", 1), ("z_Next", "p", 1),
               ("z_NMax", "i", 1), ("z_UAlloc", "i", 1), ("z_ChunkSize", "i", 1),
               ("z_FirstFreePg", "i", 1), ("z_ZoneIndex", "i", 1))
_PAGE_ARY = (("z_PageAry", "p", ZALLOC_MAX_ZONE_SIZE // PAGE_SIZE),)
SLZONE_FIELDS = {
    "1.1": _SLZONE_1_1 + _PAGE_ARY,
    "1.2": _SLZONE_1_1 + (("z_Flags", "i", 1),) + _PAGE_ARY,   # c7158d945f: after z_ZoneIndex
}


# --- the rules, as pure functions -------------------------------------------------------------
def zoneindex(n: int) -> tuple[int, int]:
    """(zone index, chunk size) for a request of n bytes: n rounded up to its band's
    granularity.  n = 0 gives (-1, 0), as the C does; n >= 16384 panics."""
    for below, gran, base in BANDS:
        if n < below:
            chunk = (n + gran - 1) & -gran
            return chunk // gran + base, chunk
    raise KernelPanic(f"Unexpected byte count {n}")


_ZONE_OF = tuple(zoneindex(n) for n in range(ZALLOC_ZONE_LIMIT))
CHUNK_SIZES = sorted({c for _, c in _ZONE_OF[1:]})                    # chunk size of each zone


@cache
def zone_table(limit: int) -> dict:
    """The hot path's zoneindex: request size -> (zone index, chunk size) for the sizes
    that go to a zone, those below ZoneLimit ``limit``, so that one dict lookup also sends
    size 0, sizes >= ZoneLimit and page multiples to the large path.  Shared, never modified."""
    return {n: _ZONE_OF[n] for n in range(1, limit) if n & PAGE_MASK}


def zone_size(usable_bytes: int, kva_size: int | None = None) -> int:
    """kmeminit's ZoneSize: 32K, doubled while below 128K and twice it is below the usable
    memory counted in KB (capped at the KVA size): a byte count compared with a KB count,
    so "about 1/1024 of memory" (section 2.1): <= 64 MiB 32K, <= 128 MiB 64K, else 128K."""
    limsize = usable_bytes if kva_size is None else min(usable_bytes, kva_size)
    usesize = limsize // 1024
    zs = ZALLOC_MIN_ZONE_SIZE
    while zs < ZALLOC_MAX_ZONE_SIZE and zs << 1 < usesize:
        zs <<= 1
    return zs


def zone_limit(zone_size_: int, mode: str = "constant") -> int:
    """ZoneLimit: the constant 16384 (original) or min(ZoneSize/4, 16384) (2003-10-02)."""
    return ZALLOC_ZONE_LIMIT if mode == "constant" else min(zone_size_ // 4, ZALLOC_ZONE_LIMIT)


def zone_header_size(arch_name: str, version: str = "1.2") -> int:
    """sizeof(SLZone) with C natural alignment: i386 164 (1.1) / 168 (1.2); amd64, with
    8-byte pointers, 304 for both (the 4-byte pad before z_PageAry is where 1.2's z_Flags goes)."""
    ptr = ARCHES[arch_name].ptr_size
    off = align = 0
    for _name, ctype, count in SLZONE_FIELDS[version]:
        size = ptr if ctype == "p" else 4
        align = max(align, size)
        off = (off + size - 1) // size * size + size * count
    return (off + align - 1) // align * align


def is_power_of_two(size: int) -> bool:
    """The zone code's test: (size | (size - 1)) + 1 == 2 * size."""
    return (size | (size - 1)) + 1 == size << 1


def first_offset(chunk: int, header: int) -> int:
    """Offset of chunk 0 from the zone base (section 1.4): the header rounded up to the
    chunk size for a power of two (so every chunk is size-aligned), else to 8."""
    if is_power_of_two(chunk):
        return (header + chunk - 1) & -chunk
    return (header + MIN_CHUNK_MASK) & ~MIN_CHUNK_MASK


def zone_nmax(zone_size_: int, chunk: int, header: int) -> int:
    """z_NMax: the chunks a zone holds after its first-chunk offset (section 2.4)."""
    return (zone_size_ - first_offset(chunk, header)) // chunk


def type_limit(usable_bytes: int, kva_size: int) -> int:
    """malloc_init's ks_limit: min(physical memory, KVA size) / 10."""
    return min(usable_bytes, kva_size) // 10


def slab_page_class(flags: int) -> int:
    """kmem_slab_alloc's vm_page_alloc class (section 5.1): VM_ALLOC_ZERO (3) ORed into
    INTERRUPT (1) or SYSTEM (2) gives 3, so any M_ZERO request is VM_ALLOC_ZERO; otherwise
    M_NOWAIT without M_USE_RESERVE is INTERRUPT and everything else SYSTEM."""
    base = VM_ALLOC_INTERRUPT if flags & (NOWAIT | USE_RESERVE) == NOWAIT else VM_ALLOC_SYSTEM
    return base | VM_ALLOC_ZERO if flags & ZERO else base


# --- per-zone and per-CPU state ---------------------------------------------------------------
@define(slots=True, eq=False)
class Zone:
    """struct SLZone, out of band; ``base`` is the zone's address (where the header is)."""

    base: int
    cpu: int                          # z_Cpu: the CPU that created it owns it
    magic: int = ZALLOC_SLAB_MAGIC    # -1 while on FreeZones
    zi: int = 0
    chunk: int = 0                    # z_ChunkSize
    off: int = 0                      # first-chunk offset
    nmax: int = 0
    nfree: int = 0
    ualloc: int = 0                   # offset of the next never-used chunk
    first_free_pg: int = 0
    flags: int = 0                    # 1.2: SLZF_UNOTZEROD
    page_ary: list = field(factory=list)   # per page a LIFO of free chunks (top = head)
    zone_list: list = field(factory=list)  # the owner's ZoneAry[zi] (kalloc's shortcut)
    rchunks: list = field(factory=list)    # passive remote free: z_RChunks (top = head)
    rsignal: int = 0
    rcount: int = 0

    def setup(self, zi: int, chunk: int, off: int, nmax: int, npages: int, flags: int, zone_list: list) -> None:
        """The new-zone assignments of malloc (section 3.2 step 9): the first chunk is
        handed out at once, so NFree = NMax - 1 and UAlloc = off + chunk."""
        self.magic = ZALLOC_SLAB_MAGIC
        self.zi, self.chunk, self.off, self.nmax = zi, chunk, off, nmax
        self.nfree = nmax - 1
        self.ualloc = off + chunk
        self.first_free_pg = npages
        self.flags = flags
        self.page_ary = [[] for _ in range(npages + 1)]   # + a sentinel, always empty
        self.zone_list = zone_list
        self.rchunks = []
        self.rsignal = self.rcount = 0


def _never_used_flags(z: Zone, f: int) -> int:
    """M_ZERO for a never-used chunk (section 3.3): dropped when the zone came zeroed from
    kmem_slab_alloc, kept when it was reused from FreeZones (1.2's SLZF_UNOTZEROD; 1.1 never
    sets it: the M_ZERO bug)."""
    return f if z.flags & SLZF_UNOTZEROD else f & ~ZERO


@define(slots=True, eq=False)
class SLGlobalData:
    """gd_slab of one CPU.  Lists are Python lists whose *end* is the head: push at the
    head is append, the head is [-1], NFreeZones is len(free_zones)."""

    cpu: int
    zone_ary: list = field(factory=lambda: [[] for _ in range(NZONES)])
    free_zones: list = field(factory=list)


class SlabBackend(Backend):
    NAME = "slab"
    DESCRIPTION = "DragonFly BSD per-CPU slab allocator (kern_slaballoc.c 1.2, 2003), later fixes as knobs"
    DEFAULT_PAGE_POLICY = "2003-09-14"
    ALIGNS_POWERS_OF_TWO = True
    OPTIONS = {
        "zone_limit": Option("constant", "constant: requests >= 16384 go to kmem (2003-08); runtime: "
                                         "min(ZoneSize/4, 16384) (2003-10-02)", ("constant", "runtime")),
        "remote_free": Option("ipi", "ipi: one IPI per cross-CPU free (2003-08); passive: RChunks and a "
                                     "passive IPI only when the owner asks (2010-09-18)", ("ipi", "passive")),
        "zone_cache": Option(ZONE_RELS_THRESH, "wholly free zones kept per CPU (2; 32 since 2011-03-08)",
                             maximum=1 << 16),
        "zone_trim": Option("free", "free: trim FreeZones in free() (2003-08); malloc: in the next "
                                    "blocking malloc (2003-09-25)", ("free", "malloc")),
        "mzero_bug": Option(False, "rev 1.1: M_ZERO may return dirty memory from a reused zone"),
        "realloc_bug": Option(False, "realloc runs zoneindex on sizes >= ZoneLimit and panics "
                                     "\"Unexpected byte count\" (Bug A, 2003-08 until 2009-04-22)"),
        "percpu_type_stats": Option(False, "per-CPU malloc_type counters (2003-10-18): ks_inuse[cpu] and "
                                           "ks_memuse[cpu] slots, which still share lines, and a shared ks_calls"),
    }
    ZERO_UNDER_LOCK = True    # kmem_slab_alloc zeroes the new pages before vm_map_unlock
    IDLE_ZERO = False         # DragonFly removed the idle loop's page zeroing on 2003-06-20 (8ad65e0803)

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        m = self.machine
        a = m.arch
        self.ncpus = m.ncpus
        self.kva_min = a.kva_min
        self.ptr_mask = (1 << 8 * a.ptr_size) - 1
        self.zero_length_ptr = -8 & self.ptr_mask
        self.version = "1.1" if options["mzero_bug"] else "1.2"
        self.unotzerod = 0 if options["mzero_bug"] else SLZF_UNOTZEROD
        self.header_size = zone_header_size(a.name, self.version)
        usable = m.npages * a.page_size            # v_page_count * PAGE_SIZE
        self.zone_size = zs = zone_size(usable, a.kva_size)
        self.zone_mask = zs - 1
        self.zone_base_mask = ~self.zone_mask
        self.zone_page_count = zs // PAGE_SIZE
        self.zone_limit = zone_limit(zs, options["zone_limit"])
        self.type_limit = type_limit(usable, a.kva_size)
        self.offsets = [first_offset(c, self.header_size) for c in CHUNK_SIZES]
        self.nmaxes = [zone_nmax(zs, c, self.header_size) for c in CHUNK_SIZES]
        self.passive = options["remote_free"] == "passive"
        self.zone_cache = options["zone_cache"]
        self.trim_in_free = options["zone_trim"] == "free"
        if self.trim_in_free and self.zone_cache == 0:
            raise ValueError("zone_cache=0 needs zone_trim=malloc: the 1.1 trimming in free() replaces "
                             "the head of FreeZones when it holds exactly zone_cache zones, and with 0 "
                             "that head is NULL")
        self.realloc_bug = options["realloc_bug"]
        self.invariants = options["invariants"]
        shared = m.ncpus > 1 and options["coherence"]
        self.touch_type = (None if not shared else self._touch_percpu_stats if options["percpu_type_stats"]
                           else m.lines.touch)
        self.slgd = [SLGlobalData(c) for c in range(self.ncpus)]
        self._cpu_zone_ary = {c: gd.zone_ary for c, gd in enumerate(self.slgd)}
        self._zone_of = zone_table(self.zone_limit)
        self.trim_pending = [False] * self.ncpus   # zone_trim=malloc: NFreeZones > zone_cache
        self.zones: dict = {}                # zone base -> Zone (live or on a FreeZones list)
        self.live: dict = {}                 # addr -> MallocType, the always-on check
        self.kmemusage: dict = {}            # page index (addr - KVA min) >> 12 -> ku_pagecnt
        self.large_freed: set = set()        # starts of freed large blocks (double-free reports)
        self.zones_created = self.zones_released = self.kmem_slab_frees = 0
        self.boot_message = f"Slab ZoneSize set to {zs // 1024}KB"   # printf under bootverbose
        # kmeminit: the kmemusage array, one 4-byte entry per KVA page, with M_ZERO (i386).
        self.kmemusage_bytes = a.kva_size // PAGE_SIZE * KMEMUSAGE_SIZE if a.ptr_size == 4 else 0
        self.kmemusage_va = None
        if self.kmemusage_bytes:
            self.kmemusage_va = self._kmem_slab_alloc(self._round_page(self.kmemusage_bytes), PAGE_SIZE,
                                                      ZERO, None)
        if self.invariants:
            self.free = self._free_invariants
        if not self.trim_in_free:
            self.malloc = self._malloc_trimming

    def guarded_request(self, size: int, padded: int) -> int:
        """The request the debug wrapper makes for ``size`` bytes and their guards
        (``padded`` bytes).  Debug options must not change what a valid call answers: where
        zone 71 holds one chunk (ZoneSize 32K, constant ZoneLimit) and panics (section 2.4),
        a request the bare slab serves from a lower zone is not moved into it by its
        guards, but taken from kmem (ZoneLimit bytes, 4 pages) instead."""
        last = NZONES - 1
        moved = self._zone_of.get(padded, (-1,))[0] == last and self._zone_of.get(size, (-1,))[0] != last
        return self.zone_limit if moved and self.nmaxes[last] == 1 else padded

    def default_type_limit(self) -> int:
        return self.type_limit

    def _touch_percpu_stats(self, mtype, cpu: int) -> None:
        """percpu_type_stats (2003-10-18, bba6a44d86): ks_inuse[cpu] and ks_memuse[cpu] are
        adjacent int slots of two arrays, each one line for every CPU, and ks_calls stays one
        shared field: three lines where 1.2's counters were one (mechanisms.md section 7.2)."""
        touch = self.machine.lines.touch
        touch(mtype, cpu)
        touch((mtype, "ks_inuse"), cpu)
        touch((mtype, "ks_memuse"), cpu)

    @staticmethod
    def _round_page(n: int) -> int:
        return (n + PAGE_MASK) & ~PAGE_MASK

    # --- malloc ---------------------------------------------------------------------------------
    def malloc(self, size, mtype, flags=2, cpu=0):
        """malloc(9) (PER-CPU: a critical section, no lock; MAY SLEEP in vm_wait without
        M_NOWAIT): M_NOWAIT, M_WAITOK, M_ZERO, M_USE_RESERVE, M_NULLOK.  Phases: type
        limit, size 0, large, existing zone (free lists, then never-used), new zone."""
        try:                                     # (free in 3.11 when nothing is raised)
            f = FLAG_INT[flags]                  # valid flags -> a plain int
            zone_ary = self._cpu_zone_ary[cpu]   # this CPU's ZoneAry
        except (KeyError, TypeError):
            f = zone_ary = None
        if (zone_ary is None or size.__class__ is not int or size < 0 or cpu.__class__ is not int
                or flags.__class__ is not int and flags.__class__ is not MallocFlags):   # True, 2.0: hash as flags
            size, f = check_args(size, flags, cpu, self.ncpus)   # a clear error, or a converted size
            zone_ary = self._cpu_zone_ary[cpu]
        try:
            if mtype._k is not self.kernel:
                self.kernel.bind_type(mtype)     # malloc_init, lazily
        except AttributeError:
            self.kernel.bind_type(mtype)         # not a MallocType: the TypeError
        mtype.calls += 1                         # every call, failures and size 0 included
        if self.touch_type is not None:          # global, not MP-safe counters: a shared line
            self.touch_type(mtype, cpu)
        if mtype.memuse >= mtype.limit:          # before adding: one call may overshoot
            if f & MAY_FAIL:
                return None
            raise KernelPanic(f"{mtype.name}: malloc limit exceeded")
        try:
            zi, chunk = self._zone_of[size]
        except KeyError:                         # 0, >= ZoneLimit, a multiple of PAGE_SIZE
            return self._malloc_large(size, mtype, f, cpu)
        zl = zone_ary[zi]
        if zl:                                   # existing zone: always the head
            z = zl[-1]
            n = z.nfree - 1
            if n > 0:
                z.nfree = n
            else:
                self._last_chunk(z, zl, size)
            free = z.page_ary[z.first_free_pg]   # (a sentinel empty list at ZonePageCount)
            if free:
                va = free.pop()
            else:
                va, f = self._next_chunk(z, f)
        else:
            z = self._new_zone(cpu, zi, chunk, f, size, mtype)
            if z is None:
                return None
            va = z.base + z.off
            f = _never_used_flags(z, f)
        self.crit_sections += 1
        if f & ZERO:
            self.vm.zero(va, chunk)              # the chunk size, outside the critical section
        self.live[va] = mtype
        mtype.inuse += 1
        memuse = mtype.memuse + chunk
        mtype.memuse = memuse
        if memuse > mtype.maxused:
            mtype.maxused = memuse
        return va

    def _last_chunk(self, z: Zone, zl: list, size: int) -> None:
        """--z_NFree reached 0: the zone leaves ZoneAry (it is the head).  Passive remote
        free first sets RSignal (if RChunks is empty) and takes back the remote chunks."""
        if z.nfree <= 0:                         # the head zone was full already (section 2.4)
            if self.invariants:
                raise KernelPanic("assertion: z->z_NFree > 0 in malloc")
            raise KernelPanic(
                f"malloc({size}): zone {z.zi} ({z.chunk}-byte chunks) at {z.base:#x} is full but still "
                f"at the head of ZoneAry[{z.zi}]: at ZoneSize {self.zone_size // 1024}K it holds NMax "
                f"{z.nmax} chunk, so the new zone was pushed with NFree 0; kern_slaballoc.c 1.1 would hand "
                f"out {z.base + z.ualloc:#x}, past the end of the zone (INVARIANTS: \"assertion: "
                f"z->z_NFree > 0 in malloc\"). Fixed 2003-10-02 by ZoneLimit: zone_limit=\"runtime\"")
        z.nfree = 0
        if self.passive:
            if not z.rchunks:
                z.rsignal = 1
            self._drain_rchunks(z)
            if z.nfree:
                z.rsignal = 0
                return
        zl.pop()

    def _next_chunk(self, z: Zone, f: int) -> tuple[int, int]:
        """z_FirstFreePg's list is empty: advance it for good to the first non-empty page
        list and pop that (LIFO), or take the never-used chunk at z_UAlloc."""
        pa, pg, npg = z.page_ary, z.first_free_pg, self.zone_page_count
        while pg < npg and not pa[pg]:
            pg += 1
        z.first_free_pg = pg
        if pg < npg:
            return pa[pg].pop(), f
        self.cold_allocs += 1
        va = z.base + z.ualloc
        z.ualloc += z.chunk
        return va, _never_used_flags(z, f)

    def _new_zone(self, cpu: int, zi: int, chunk: int, f: int, size: int, mtype):
        """No zone of this size has a free chunk: reuse one from FreeZones (only its header
        is zeroed; 1.2 marks it SLZF_UNOTZEROD) or take ZoneSize bytes, ZoneSize-aligned and
        zeroed, from kmem_slab_alloc.  Pushed at the head of ZoneAry even with NFree 0."""
        gd = self.slgd[cpu]
        if gd.free_zones:
            z = gd.free_zones.pop()
            self.vm.zero(z.base, self.header_size)     # bzero(z, sizeof(SLZone))
            flags = self.unotzerod
            self.cold_allocs += 1                      # its first chunk was last touched long ago
        else:
            zeroed = self.vm.bytes_zeroed
            base = self._kmem_slab_alloc(self.zone_size, self.zone_size, f | ZERO, (size, mtype, f, cpu))
            if base is None:
                return None
            z = self.zones[base] = Zone(base, cpu)
            self.zones_created += 1
            flags = 0
            if self.vm.bytes_zeroed == zeroed:         # PG_ZERO pages: no bzero just wrote its lines
                self.cold_allocs += 1
        zl = gd.zone_ary[zi]
        z.setup(zi, chunk, self.offsets[zi], self.nmaxes[zi], self.zone_page_count, flags, zl)
        zl.append(z)
        return z

    def _malloc_large(self, size: int, mtype, f: int, cpu: int):
        """Size 0 (ZERO_LENGTH_PTR) and the large path: >= ZoneLimit or a page multiple, whole
        pages from kmem_slab_alloc (zeroed there on M_ZERO), the count in kmemusage."""
        if size == 0:
            return self.zero_length_ptr          # no memory, no counters but ks_calls
        nbytes = self._round_page(size)
        va = self._kmem_slab_alloc(nbytes, PAGE_SIZE, f, (size, mtype, f, cpu))
        if va is None:
            return None
        npg = nbytes >> PAGE_SHIFT
        if self.kmemusage_va is not None and npg > KU_PAGECNT_MAX:
            raise KernelPanic(f"malloc({size}): ku_pagecnt is a u_short, {npg} pages are recorded as "
                              f"{npg & KU_PAGECNT_MAX} and free() would release the wrong size "
                              f"(ku_pagecnt became 32-bit on 2010-02-09)")
        self.kmemusage[(va - self.kva_min) >> PAGE_SHIFT] = npg
        self.large_freed.discard(va)
        self.crit_sections += 1
        self.cold_allocs += 1
        self.live[va] = mtype
        mtype.inuse += 1
        mtype.memuse += nbytes
        mtype.maxused = max(mtype.maxused, mtype.memuse)
        return va

    # --- kmem_slab_alloc / kmem_slab_free (section 6.2) -----------------------------------------
    def _kmem_slab_alloc(self, nbytes: int, align: int, f: int, req):
        """kmem_slab_alloc (MAY SLEEP without M_NOWAIT): first-fit, ``align``-aligned VA in
        kernel_map, then pages one by one (colour = kernel_object index).  No VA: NULL for
        M_NOWAIT/M_NULLOK, else panic.  No page: M_NOWAIT undoes and gets NULL, anything
        else sleeps in vm_wait (Deadlock on "vmwait" after undoing; ``req`` = (size, type,
        flags, cpu) of the malloc, whose ks_calls is un-counted because the call is retried)."""
        vm = self.vm
        self.lock_acquires += 1                  # vm_map_lock(kernel_map)
        va = vm.kernel_map.findspace(nbytes, align)
        if va is None:
            if f & MAY_FAIL:
                return None
            raise KernelPanic("kmem_slab_alloc(): kernel_map ran out of space!")
        if vm.map_pages(va, nbytes >> PAGE_SHIFT, slab_page_class(f), (va - self.kva_min) >> PAGE_SHIFT,
                        zero=bool(f & ZERO)):    # M_ZERO: each page not PG_ZERO is zeroed
            return va
        vm.kernel_map.remove(va, nbytes)
        if f & NOWAIT:
            return None
        who = "kmeminit"
        if req is not None:
            size, mtype, flags, cpu = req
            mtype.calls -= 1
            who = f"malloc({size}, '{mtype.name}', {flag_names(flags)}) on cpu {cpu}"
        raise Deadlock(f"{who} sleeps on \"vmwait\": kmem_slab_alloc({nbytes}) is short of pages "
                       f"({self.machine.free_count} free)", "vmwait")

    def _kmem_slab_free(self, va: int, nbytes: int) -> None:
        """kmem_slab_free: vm_map_remove frees the pages and the KVA (a TLB shootdown on SMP)."""
        self.lock_acquires += 1
        self.kmem_slab_frees += 1
        self.vm.unmap_pages(va, nbytes >> PAGE_SHIFT)
        self.vm.kernel_map.remove(va, nbytes)

    def _release_zone(self, z: Zone) -> None:
        del self.zones[z.base]
        self._kmem_slab_free(z.base, self.zone_size)
        self.zones_released += 1

    # --- free -----------------------------------------------------------------------------------
    def free(self, addr, mtype, cpu=0):
        """free(9) (PER-CPU; MAY IPI): ZERO_LENGTH_PTR returns, a large block goes back to the
        VM on any CPU, a chunk of another CPU's zone is sent to its owner."""
        live = self.live
        try:                                     # the arithmetic first: an address that is no
            z = self.zones[addr & self.zone_base_mask]   # int (a float equal to a live one)
        except KeyError:                         # fails here, before it can leave ``live``
            z = None
        except TypeError:
            return self._free_unusual(addr, mtype, live, cpu)
        t = live.pop(addr, live)                 # `live` as default: never a MallocType
        if t is not mtype or cpu.__class__ is not int or addr.__class__ is not int:   # (numpy ints too)
            return self._free_unusual(addr, mtype, t, cpu)
        if mtype._k is not self.kernel:
            self.kernel.bind_type(mtype)
        if z is None or z.cpu != cpu:            # (the owner's number is a valid CPU)
            if not 0 <= cpu < self.ncpus:
                return self._free_unusual(addr, mtype, t, cpu)
            if z is None:
                return self._free_large(addr, mtype, cpu)
            return self._free_cross(z, addr, mtype, cpu)
        self.crit_sections += 1                  # the local free, on the owning CPU
        if self.touch_type is not None:
            self.touch_type(mtype, cpu)
        pg = (addr - z.base) >> PAGE_SHIFT       # the page the chunk starts in
        z.page_ary[pg].append(addr)
        if pg < z.first_free_pg:
            z.first_free_pg = pg
        n = z.nfree + 1
        z.nfree = n
        mtype.inuse -= 1
        mtype.memuse -= z.chunk
        if n == 1 or (n == z.nmax and len(z.zone_list) > 1):
            self._zone_gained(z, n - 1)

    def _zone_gained(self, z: Zone, was: int) -> None:
        """z_NFree rose from ``was``: the first free of a full zone pushes it back at the
        head of ZoneAry; a wholly free zone that is not the last of its size is retired."""
        zl = z.zone_list
        if was == 0 and z.nfree:
            if z.nmax == 1:
                raise self._nmax1_panic(z)
            zl.append(z)
        if z.nfree == z.nmax and len(zl) > 1 and not z.rcount:
            self._zone_free(z, zl)

    def _nmax1_panic(self, z: Zone) -> KernelPanic:
        """A zone of NMax 1 is pushed on ZoneAry at creation with NFree 0 and never leaves
        it, so its first free would push it a second time (section 2.4)."""
        return KernelPanic(
            f"free: zone {z.zi} ({z.chunk}-byte chunks) at {z.base:#x} holds NMax 1 chunk at ZoneSize "
            f"{self.zone_size // 1024}K and stayed on ZoneAry[{z.zi}] while full; kern_slaballoc.c 1.1 would "
            f"push it there a second time (a zone linked to itself), then move it to FreeZones while "
            f"ZoneAry still points to it. Fixed 2003-10-02 by ZoneLimit: zone_limit=\"runtime\"")

    def _zone_free(self, z: Zone, zl: list) -> None:
        """A wholly free zone that is not the last of its size: unlink it (a linear search in
        the original) and put it on FreeZones.  1.1 trimming (in free): when FreeZones holds
        exactly zone_cache zones and kernel_map is not locked (never, here), the zone replaces
        the head and the old head goes back to the VM.  zone_trim=malloc only pushes."""
        zl.remove(z)
        z.magic = -1
        fz = self.slgd[z.cpu].free_zones
        if self.trim_in_free and len(fz) == self.zone_cache:
            old = fz[-1]
            fz[-1] = z
            self._release_zone(old)
        else:
            fz.append(z)
            if len(fz) > self.zone_cache and not self.trim_in_free:
                self.trim_pending[z.cpu] = True

    def _malloc_trimming(self, size, mtype, flags=2, cpu=0):
        """zone_trim=malloc (2003-09-25): a blocking malloc of a non-zero size first trims
        this CPU's FreeZones (bound over malloc so the default hot path has no test; XXX: the
        original trims after the limit test, so a malloc over its limit trims here too)."""
        if (cpu.__class__ is int and 0 <= cpu < self.ncpus and self.trim_pending[cpu]
                and size.__class__ is int and size > 0 and not FLAG_INT.get(flags, NOWAIT) & NOWAIT):
            self._trim_free_zones(cpu)
        return SlabBackend.malloc(self, size, mtype, flags, cpu)

    def _trim_free_zones(self, cpu: int) -> None:
        """zone_trim=malloc (2003-09-25): a blocking malloc releases FreeZones heads down to
        zone_cache, one critical section each."""
        fz = self.slgd[cpu].free_zones
        while len(fz) > self.zone_cache:
            self.crit_sections += 1
            self._release_zone(fz.pop())
        self.trim_pending[cpu] = False

    def _free_large(self, addr: int, mtype, cpu: int) -> None:
        """ku_pagecnt != 0: the pages go back to the VM from whatever CPU frees (no IPI)."""
        npg = self.kmemusage.pop((addr - self.kva_min) >> PAGE_SHIFT)
        nbytes = npg << PAGE_SHIFT
        mtype.inuse -= 1
        mtype.memuse -= nbytes
        self.crit_sections += 1
        if self.touch_type is not None:
            self.touch_type(mtype, cpu)
        self._kmem_slab_free(addr, nbytes)
        self.large_freed.add(addr)

    def _free_cross(self, z: Zone, addr: int, mtype, cpu: int) -> None:
        """The zone belongs to another CPU.  ipi (1.1): lwkt_send_ipiq to the owner, which
        frees and accounts.  passive (2010): account here, CAS the chunk onto z_RChunks, and
        send a passive IPI only if the owner set RSignal and RChunks was empty (RCount keeps
        the zone alive until the IPI has run)."""
        self.remote_frees += 1
        if not self.passive:
            self.machine.send_ipi(cpu, z.cpu, self._free_remote, addr, mtype, z.cpu)
            return
        self.crit_sections += 1
        if self.touch_type is not None:
            self.touch_type(mtype, cpu)
        mtype.inuse -= 1
        mtype.memuse -= z.chunk
        rsignal = z.rsignal
        if rsignal:
            z.rcount += 1
        was_empty = not z.rchunks
        z.rchunks.append(addr)
        self.remote_cas += 1
        if rsignal:
            if was_empty:
                self.machine.send_ipi_passive(cpu, z.cpu, self._kfree_remote, z)
            else:
                z.rcount -= 1

    def _free_remote(self, addr: int, mtype, owner: int) -> None:
        """free_remote, the IPI handler on the owner: free() again, where the local path
        runs (the chunk left ``live`` when the IPI was sent, so a free of it meanwhile is
        reported as a double free)."""
        self.live[addr] = mtype
        SlabBackend.free(self, addr, mtype, owner)

    def _kfree_remote(self, z: Zone) -> None:
        """kfree_remote, the passive IPI handler on the owner: clear RSignal, take RChunks
        back, put the zone on ZoneAry if it was off, retire it if wholly free."""
        z.rcount -= 1
        self.crit_sections += 1
        nfree = z.nfree
        if z.rchunks:
            z.rsignal = 0
        self._drain_rchunks(z)
        self._zone_gained(z, nfree)

    @staticmethod
    def _drain_rchunks(z: Zone) -> None:
        """RChunks back onto the owner's per-page lists (from its head), NFree counting them."""
        rc = z.rchunks
        for addr in reversed(rc):
            pg = (addr - z.base) >> PAGE_SHIFT
            z.page_ary[pg].append(addr)
            if pg < z.first_free_pg:
                z.first_free_pg = pg
        z.nfree += len(rc)
        rc.clear()

    def _free_unusual(self, addr, mtype, popped, cpu) -> None:
        """The live entry put back; then a bad CPU, ZERO_LENGTH_PTR (returns), NULL (1.1 has
        no check: a panic that says so) or a bad free (always caught)."""
        if popped is not self.live:
            self.live[addr] = popped
        if cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            check_args(0, 2, cpu, self.ncpus, "free")
        if addr.__class__ is int and addr == self.zero_length_ptr:
            return None
        if addr is None or (addr.__class__ is int and addr == 0):
            raise KernelPanic(self._null_free_message())
        raise bad_free(self, addr, mtype, self.live)

    def _null_free_message(self) -> str:
        where = "the vm_page of address 0"
        if self.kmemusage_va is not None:
            index = ((0 - self.kva_min) & self.ptr_mask) >> PAGE_SHIFT
            where = f"kmemusage[{index}], beyond the {self.kmemusage_bytes // KMEMUSAGE_SIZE}-entry array"
        return (f"free(NULL): kern_slaballoc.c 1.1 has no NULL check; btokup(NULL) reads {where} "
                f"(DragonFly panics \"trying to free NULL pointer\" since 2004-03-12)")

    # --- INVARIANTS (bound over free when the option is on) -------------------------------------
    def _free_invariants(self, addr, mtype, cpu=0):
        """free, with the 0xdeadc0de fill of the first min(chunk size, 64) bytes (64 for a
        large block) done first, as the original fills before linking the chunk."""
        if (self.live.get(addr, self.live) is mtype and addr.__class__ is int and cpu.__class__ is int
                and 0 <= cpu < self.ncpus):
            n = min(self.usable_size(addr), MAX_COPY)
            self.vm.write(addr, WEIRD_ADDR.to_bytes(4, "little") * (n // 4))
        SlabBackend.free(self, addr, mtype, cpu)

    # --- realloc and sizes ----------------------------------------------------------------------
    def realloc(self, addr, size, mtype, flags=2, cpu=0):
        """realloc(9) as 1.1 does it (MAY SLEEP without M_NOWAIT).  NULL/ZERO_LENGTH_PTR:
        malloc; size 0: free, NULL.  Large block: same pointer if round_page(size) is its
        size.  Zone chunk: zoneindex(size) -- which panics "Unexpected byte count" for
        sizes >= 16384 with realloc_bug (Bug A; by default only sizes below ZoneLimit go
        through it, as since 2009-04-22) -- and the same pointer if the chunk size is the
        zone's.  Otherwise malloc (M_ZERO passed through: Bug B), copy, free."""
        size, f = self._realloc_args(size, flags, cpu)
        if addr is None or (addr.__class__ is int and (addr == 0 or addr == self.zero_length_ptr)):
            return self.malloc(size, mtype, f, cpu)
        self._realloc_owned(addr, mtype)
        if size == 0:
            self.free(addr, mtype, cpu)
            return None
        z = self.zones.get(addr & self.zone_base_mask)
        if z is None:
            old = self.usable_size(addr)
            if old == self._round_page(size):
                return addr
        else:
            old = z.chunk
            if self.realloc_bug or size < self.zone_limit:
                size = zoneindex(size)[1]
                if size == old:
                    return addr
        return self._realloc_move(addr, old, size, mtype, f, cpu)

    def usable_size(self, addr) -> int:
        """The chunk size, or the page-rounded size of a large block; 0 for ZERO_LENGTH_PTR."""
        if addr.__class__ is not int or addr not in self.live:
            if addr.__class__ is int and addr == self.zero_length_ptr:
                return 0
            raise bad_free(self, addr, None, self.live, "usable_size")
        z = self.zones.get(addr & self.zone_base_mask)
        if z is not None:
            return z.chunk
        return self.kmemusage[(addr - self.kva_min) >> PAGE_SHIFT] << PAGE_SHIFT

    def was_chunk(self, addr: int) -> bool:
        """A chunk start this zone handed out before (below z_UAlloc), or a freed large block."""
        if addr.__class__ is not int:
            return False
        z = self.zones.get(addr & self.zone_base_mask)
        if z is not None:
            rel = addr - z.base - z.off
            return rel >= 0 and rel % z.chunk == 0 and z.off + rel < z.ualloc
        return addr in self.large_freed and not self.vm.kernel_map.is_allocated(addr, PAGE_SIZE)

    # --- reports --------------------------------------------------------------------------------
    def classes(self) -> list:
        """The 72 zones in zone order (the ``vmstat -z`` view): chunk size, NMax, ZoneSize,
        first-chunk offset, chunks in use and free (RChunks count as free), zones in use on
        all CPUs."""
        slabs, free, inuse = [0] * NZONES, [0] * NZONES, [0] * NZONES
        for z in self.zones.values():
            if z.magic == ZALLOC_SLAB_MAGIC:
                nfree = z.nfree + len(z.rchunks)
                slabs[z.zi] += 1
                free[z.zi] += nfree
                inuse[z.zi] += z.nmax - nfree
        return [{"size": c, "objs_per_slab": self.nmaxes[zi], "slab_bytes": self.zone_size,
                 "first_offset": self.offsets[zi], "inuse": inuse[zi], "free": free[zi],
                 "slabs": slabs[zi], "zone": zi}
                for zi, c in enumerate(CHUNK_SIZES)]

    def extra_stats(self) -> dict:
        in_use = [sum(1 for z in self.zones.values() if z.cpu == gd.cpu and z.magic == ZALLOC_SLAB_MAGIC)
                  for gd in self.slgd]
        return {"slab": {
            "version": self.version, "zone_size": self.zone_size, "zone_limit": self.zone_limit,
            "zone_page_count": self.zone_page_count, "header_bytes": self.header_size, "nzones": NZONES,
            "type_limit": self.type_limit, "zones_per_cpu": in_use,
            "free_zones_per_cpu": [len(gd.free_zones) for gd in self.slgd], "zone_cache": self.zone_cache,
            "zones_created": self.zones_created, "zones_released": self.zones_released,
            "kmem_slab_frees": self.kmem_slab_frees,
            "large_live": len(self.kmemusage), "large_pages": sum(self.kmemusage.values()),
            "kmemusage_bytes": self.kmemusage_bytes, "remote_free": self.options["remote_free"],
            "remote_pending": sum(len(z.rchunks) for z in self.zones.values()),
            "boot_message": self.boot_message}}

    def info_tables(self) -> list:
        """For ``kalloc info``: the zones (vmstat -z style), the types, and the allocator."""
        zones = [{"ITEM": f"zone {r['zone']}", "SIZE": r["size"], "NMAX": r["objs_per_slab"],
                  "OFFSET": r["first_offset"], "ZONES": r["slabs"], "USED": r["inuse"], "FREE": r["free"]}
                 for r in self.classes()]
        kb = lambda n: (n + 1023) // 1024     # noqa: E731
        types = []
        for t in reversed(self.kernel.types.values()):     # kmemstatistics: newest first
            c = self.kernel.type_counters(t)
            if c["calls"]:
                types.append({"Type": t.name, "InUse": c["inuse"], "MemUse (K)": kb(c["memuse"]),
                              "HighUse (K)": kb(c["maxused"]), "Limit (K)": kb(c["limit"]),
                              "Requests": c["calls"]})
        s = self.extra_stats()["slab"]
        summary = [{k: s[k] for k in ("version", "zone_size", "zone_limit", "header_bytes", "zones_created",
                                      "zones_released", "large_live", "large_pages", "remote_free")}]
        summary[0]["free_zones_per_cpu"] = ",".join(map(str, s["free_zones_per_cpu"]))
        return [(f"Slab zones (ZoneSize {self.zone_size // 1024}K, vmstat -z)", zones),
                *([("Memory statistics by type", types)] if types else []), ("slab", summary)]


@hookimpl
def kalloc_backends():
    return [SlabBackend]
