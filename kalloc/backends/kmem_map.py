"""``kmem_map``: FreeBSD 4.8's kernel malloc(9), the power-of-two bucket allocator.

Deterministic: the same calls give the same addresses, byte for byte.  Source:
docs/research/kmem_map.md sections 1 (kern_malloc.c 1.64.2.5) and 2 (vm_kern.c 1.61.2.2);
the ``vmstat -m`` layout is 4.8's usr.bin/vmstat/vmstat.c.  Everything is one global
critical section (splmem() = splhigh(), the giant lock on SMP): one ``lock_acquires`` per
malloc, free and realloc, which the harness turns into contention between CPUs.

The data structures (section 1.3)
---------------------------------
``bucket[20]`` (struct kmembuckets): one free list per power of two, index = log2(size).
``kmemusage[npg]``: four bytes per page of kmem_map; the first page of each refill or large
block records its bucket index ``ku_indx`` and either ``ku_freecnt`` (free chunks in that
page) or ``ku_pagecnt`` (pages of a large block).  free() finds the size from the address
alone: ``btokup(addr) = &kmemusage[(addr - kmembase) >> PAGE_SHIFT]``; the malloc type
given to free() only decides whose counters are debited.  ``struct malloc_type`` counts
ks_memuse (bucket size, not request size), ks_inuse, ks_calls, ks_maxused, ks_limit
(vm_kmem_size / 2) and ks_size, a bitmask of the buckets the type ever used::

    kernel_map  | kmemusage (kmem_alloc) | kmem_map (a submap) ..................... |
    kmem_map    | mb_map (mbufs, clusters) | bucket pages and large blocks, first fit  |
                  carved out by cpu_startup   ^ kmembase + mb_map size

    one refill of the 64-byte bucket: kmem_malloc(4096) carved from the top down
    page  | c0 | c1 | c2 | ... | c62 | c63 |      kmemusage[page] = {ku_indx 6, ku_freecnt 64}
    list  kb_next -> c63 -> c62 -> ... -> c1 -> c0 -> NULL     (descending addresses)
    free(x) pushes x at the head (LIFO): the next malloc(64) returns x, cache-hot.

Size classes (BUCKETINDX, section 1.4; MINBUCKET 4, MAXALLOCSAVE 8192)::

    request      bucket  chunks per refill  refill        kb_highwat
    0..16        16      256                1 page        1280
    17..32       32      128                1 page         640
    ...          ...     PAGE_SIZE / size   1 page         5 x chunks
    2049..4096   4096    1                  1 page           5
    4097..8192   8192    1                  2 pages          5
    > 8192       large:  round_page(size), its own kmem_malloc, returned to the VM on free

Worst-case overhead: a request of 2^k + 1 bytes takes a 2^(k+1) chunk, just under 50%
(4097 bytes take 8 KiB); a large block wastes up to 4095 bytes of its last page.  Bucket
pages are never given back, so the footprint is the historical peak per bucket, whatever
is freed later ("couldfree" counts the frees that found a whole page free above highwat).

Flags: kalloc's values are DragonFly 2003's (kalloc.flags), mapped by meaning.  Waiting is
the absence of M_NOWAIT; kmem_malloc takes INTERRUPT-class pages when
``flags & (M_NOWAIT|M_USE_RESERVE) == M_NOWAIT`` and SYSTEM-class pages otherwise (4.8
also masks M_ASLEEP, which kalloc does not have).  M_NULLOK is not 4.8's: here, as on
DragonFly, it lets a waiting caller get NULL where 4.8 would sleep (type limit, page
shortage) or panic (kmem_map full).  A sleep is a ``Deadlock`` raised before anything
changes (channel: the MallocType for the limit, "vmwait" for pages); the harness retries.

Deviations and gaps (also in docs/kmem_map.md):
  * Free lists and kmemusage are out of band (Python lists), not link words and an array
    in simulated memory; the kmemusage pages are allocated all the same.  Under
    ``invariants`` a free chunk's type and link words hold 0xdeadc0de, not pointers, and
    "Data modified on freelist" goes to ``msgbuf`` (the kernel's printf).
  * kalloc's always-on check catches a double, wild or wrong-type free before 4.8's code
    runs (4.8 detects none of them but the per-page "free: multiple frees"), so the
    INVARIANTS range/alignment KASSERTs and "malloc: wrong bucket"/"lost data" cannot fire.
  * ks_maxused is kept (4.8 has it too); ks_mapblocks is always 0, as in 4.8.
  * "freeing with unknown type" cannot happen: kalloc initialises a type on first use
    (the SYSINIT), and free(NULL, type) does just that.
  * An in-place realloc counts one lock acquisition (Giant); 4.8's realloc takes no spl.
  * XXX: no mbufs are allocated from mb_map, only its space is reserved; vm_map entry
    coalescing and the kmapentzone limit are not modelled (kalloc.vm); the
    "malloc(M_WAITOK) in interrupt context" KASSERT has no interrupt context to check.
"""

from __future__ import annotations

from attrs import define, field, frozen

from kalloc.backends.base import Backend, Option, bad_free, check_args
from kalloc.errors import Deadlock, KernelPanic
from kalloc.flags import FLAG_INT, MAY_FAIL, NOWAIT, USE_RESERVE, ZERO, MallocFlags, flag_names
from kalloc.hookspecs import hookimpl
from kalloc.machine import KMEM_OBJECT_COLOUR, VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM
from kalloc.malloc import MallocType
from kalloc.cache import Cache, cache_misuse, check_cache
from kalloc.vm_zone import kmem_alloc, zalloc, zfree, zinit

# --- tunables of 4.8 (sys/param.h, i386 param.h and vmparam.h; both kalloc arches have 4 KiB pages)
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1
MINBUCKET = 4                         # smallest chunk 1 << 4 = 16 bytes (MINALLOCSIZE)
MINALLOCSIZE = 1 << MINBUCKET
MAXALLOCSAVE = 2 * PAGE_SIZE          # largest bucketed size; above it, whole pages
NBUCKETS = MINBUCKET + 16             # bucket[0..19]; BUCKETINDX never picks 0..3
LARGEST_SMALL = MAXALLOCSAVE.bit_length() - 1   # index 13
MAX_PAGECNT = 65535                   # ku_pagecnt is a u_short
VM_KMEM_SIZE = 12 << 20
VM_KMEM_SIZE_SCALE = 3
VM_KMEM_SIZE_MAX = 200 << 20
MSIZE = 256                           # an mbuf
MCLBYTES = 2048                       # an mbuf cluster
KMEMUSAGE_SIZE = 4                    # sizeof(struct kmemusage)
U_INT_MAX = (1 << 32) - 1             # vm_kmem_size is a u_int
U_SHORT_MAX = 65535                   # ks_limblocks saturates
# INVARIANTS (section 1.10)
WEIRD_ADDR = 0xDEADC0DE
MAX_COPY = 64


# --- the rules, as pure functions -----------------------------------------------------------
def bucketindx(size: int) -> int:
    """BUCKETINDX: max(MINBUCKET, ceil(log2(size))), capped at MINBUCKET + 15 (section 1.4)."""
    return max(MINBUCKET, min(MINBUCKET + 15, (size - 1).bit_length()))


_INDX = [bucketindx(n) for n in range(MAXALLOCSAVE + 1)]   # the hot path's BUCKETINDX


def elmpercl(indx: int) -> int:
    """kb_elmpercl as kmeminit sets it: chunks per refill."""
    return 1 if 1 << indx >= PAGE_SIZE else PAGE_SIZE >> indx


def auto_maxusers(physpages: int) -> int:
    """maxusers when the kernel config says 0: one per 2 MiB of RAM, clamped to [32, 384]."""
    return min(384, max(32, physpages // (2 * 1024 * 1024 // PAGE_SIZE)))


@frozen
class KmemSizes:
    """What kmeminit and cpu_startup compute (section 1.5), all in bytes but the counts."""

    mem_size: int        # cnt.v_page_count * PAGE_SIZE
    vm_kmem_size: int    # the malloc part of kmem_map
    maxusers: int
    nmbclusters: int
    nmbufs: int
    mb_map_size: int     # the mb_map submap carved out of kmem_map
    npg: int             # pages of kmem_map (and entries of kmemusage)

    @property
    def kmem_map_size(self) -> int:
        return self.npg * PAGE_SIZE

    @property
    def kmemusage_bytes(self) -> int:
        return self.npg * KMEMUSAGE_SIZE


def kmem_map_size(physmem_bytes: int, vm_kmem_size: int = 0, maxusers: int = 0, word_bits: int = 32) -> KmemSizes:
    """kmeminit's sizing rule: RAM/3 clamped to [12 MiB, 200 MiB], the loader tunable
    ``kern.vm.kmem.size`` (``vm_kmem_size``, 0 = none) overriding, at most twice RAM; plus
    the mbuf part (nmbclusters = 512 + 16 maxusers, nmbufs = 4 nmbclusters).

    In the kernel's integer width, ``word_bits``: on i386 ``cnt.v_page_count * PAGE_SIZE`` (a
    u_int) and npg's sum (a u_long) are 32 bits, so exactly 4 GiB of RAM gives mem_size 0,
    hence vm_kmem_size 0, and a tunable near 4 GiB wraps npg to a small kmem_map.  On amd64,
    where 4.8 never ran, kalloc computes in 64 bits.  maxusers is sized from the page count
    itself, as init_param2 does."""
    mask = (1 << word_bits) - 1
    mem_size = physmem_bytes & mask
    vks = max(VM_KMEM_SIZE, mem_size // VM_KMEM_SIZE_SCALE)
    if vks >= VM_KMEM_SIZE_MAX:
        vks = VM_KMEM_SIZE_MAX
    if vm_kmem_size:
        vks = vm_kmem_size
    if vks // 2 > mem_size:
        vks = 2 * mem_size
    users = maxusers or auto_maxusers(physmem_bytes // PAGE_SIZE)
    nmbclusters = 512 + users * 16
    nmbufs = nmbclusters * 4
    mbytes = nmbufs * MSIZE + nmbclusters * MCLBYTES
    step = max(MCLBYTES, PAGE_SIZE)
    return KmemSizes(mem_size, vks, users, nmbclusters, nmbufs, -(-mbytes // step) * step,
                     ((mbytes + vks) & mask) // PAGE_SIZE)


def _suballoc(parent, name: str, size: int, why: str):
    """kmem_suballoc at boot, which panics when the submap does not fit: a clear error."""
    try:
        return parent.submap(name, size, PAGE_SIZE)
    except MemoryError:
        raise ValueError(f"{name} of {size} bytes {why}; 4.8 panics \"kmem_suballoc\" at boot") from None


def type_limit(vm_kmem_size: int) -> int:
    """malloc_init's ks_limit: "1/2 of the malloc portion of the kmem map size"."""
    return vm_kmem_size // 2


def kmem_page_class(flags: int) -> int:
    """kmem_malloc's vm_page_alloc class (section 2.2), for kalloc's flag values."""
    return VM_ALLOC_INTERRUPT if flags & (NOWAIT | USE_RESERVE) == NOWAIT else VM_ALLOC_SYSTEM


def size_names(indices) -> str:
    """Bucket sizes as vmstat -m prints them: 16,32,...,512,1K,...,8K."""
    return ",".join(f"{1 << i}" if 1 << i < 1024 else f"{1 << i >> 10}K" for i in indices)


@define(slots=True, eq=False)
class Bucket:
    """struct kmembuckets, with the free list out of band in two stacks.  4.8's one list
    is ``free`` (chunks freed since, LIFO; top = kb_next) followed by ``fresh`` (carved by
    the last refill and never handed out, highest address on top): frees always push above
    the fresh chunks and a refill only happens when both are empty.
    kb_totalfree = len(free) + len(fresh)."""

    indx: int
    size: int = field(init=False)
    elmpercl: int = field(init=False)
    highwat: int = field(init=False)
    large: bool = field(init=False)   # above MAXALLOCSAVE: whole pages, no chunks
    free: list = field(factory=list)
    fresh: list = field(factory=list)
    calls: int = 0          # kb_calls
    total: int = 0          # kb_total: chunks carved (large: blocks live)
    couldfree: int = 0      # kb_couldfree
    refills: int = 0        # kalloc: kmem_mallocs of this bucket (the "slabs")
    users: set = field(factory=set)   # types that used it: ks_size, stored by bucket

    def __attrs_post_init__(self) -> None:
        self.size = 1 << self.indx
        self.elmpercl = elmpercl(self.indx)
        self.highwat = 5 * self.elmpercl
        self.large = self.size > MAXALLOCSAVE

    @property
    def totalfree(self) -> int:
        return len(self.free) + len(self.fresh)

    def free_list(self):
        """The chunks in 4.8's list order, from kb_next."""
        yield from reversed(self.free)
        yield from reversed(self.fresh)


class KmemMapBackend(Backend):
    NAME = "kmem_map"
    DESCRIPTION = "FreeBSD 4.8 kernel malloc: power-of-two buckets in kmem_map, one global lock"
    DEFAULT_PAGE_POLICY = "4.8"
    OPTIONS = {
        "vm_kmem_size": Option(0, "malloc part of kmem_map in bytes, the kern.vm.kmem.size tunable "
                                  "(0: RAM/3 clamped to [12 MiB, 200 MiB])", maximum=U_INT_MAX),
        "maxusers": Option(0, "kernel maxusers, sizes mb_map inside kmem_map (0: RAM/2MiB in [32, 384])"),
    }
    ZERO_UNDER_LOCK = False   # malloc's M_ZERO bzero comes after splx(s)

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        m, vm = self.machine, self.vm
        self.ncpus = m.ncpus
        physmem = m.npages * PAGE_SIZE
        self.sizes = s = kmem_map_size(physmem, options["vm_kmem_size"], options["maxusers"], 8 * m.arch.ptr_size)
        if not s.vm_kmem_size:
            raise ValueError(f"kmem_map: vm_kmem_size is 0 with {physmem} bytes of RAM: 4.8's kmeminit computes "
                             f"cnt.v_page_count * PAGE_SIZE in 32 bits, which wraps to {s.mem_size}, and caps "
                             f"vm_kmem_size at twice that, so every malloc type's limit would be 0 and the first "
                             f"malloc would sleep forever; boot kmem_map with less than 4G of physmem")
        # kmeminit: the kmemusage array from kernel_map, then the submap
        self.kmemusage_va = kmem_alloc(vm, s.kmemusage_bytes, "kmeminit")
        self.kmem_map = _suballoc(vm.kernel_map, "kmem_map", s.kmem_map_size,
                                  f"(vm_kmem_size {s.vm_kmem_size}) does not fit in the {m.arch.name} kernel map")
        self.kmembase, self.kmemlimit = self.kmem_map.min_offset, self.kmem_map.max_offset
        self.buckets = [Bucket(i) for i in range(NBUCKETS)]
        # kmemusage, one entry per page: ku_indx as the bucket it names (bucket[0] when
        # unused), and the union ku_freecnt / ku_pagecnt
        self.ku_kb = [self.buckets[0]] * s.npg
        self.ku_cnt = [0] * s.npg
        self._bucket_of = [self.buckets[i] for i in _INDX]
        self.live: dict = {}                 # addr -> MallocType, the always-on check
        self.large_freed: set = set()        # starts of freed large blocks (double-free reports)
        self.large_live = self.large_pages = 0
        self.limblocks: dict = {}            # MallocType -> ks_limblocks
        self.msgbuf: list = []               # the kernel's printf output
        self.word = m.arch.ptr_size          # sizeof(long)
        self.freed_by: dict = {}             # INVARIANTS: chunk -> name of the type that freed it
        self.invariants = options["invariants"]
        self.touch = m.lines.touch if m.ncpus > 1 and options["coherence"] else None
        if self.invariants:
            self.malloc, self.free = self._malloc_invariants, self._free_invariants
        # cpu_startup (i386 machdep.c 1.385.2.30): mclrefcnt, one byte per cluster, is the first
        # malloc, M_MBUF and M_NOWAIT, zeroed; only then is mb_map carved, first fit, so a
        # bucket page (or, from 1 GiB, a large block) lies below mb_map at kmembase.
        refcnt, limit = s.mb_map_size // MCLBYTES, type_limit(s.vm_kmem_size)
        self.mclrefcnt = self.malloc(refcnt, MallocType("mbuf", "mbuf", limit), NOWAIT) if limit else None
        if self.mclrefcnt is None:
            raise ValueError(f"kmem_map: cpu_startup's malloc of mclrefcnt ({refcnt} bytes, M_NOWAIT) fails with "
                             f"vm_kmem_size {s.vm_kmem_size} (type limit {limit}); 4.8 faults in the bzero after it")
        vm.zero(self.mclrefcnt, refcnt)
        self.mb_map = _suballoc(self.kmem_map, "mb_map", s.mb_map_size,
                                f"does not fit in kmem_map of {s.kmem_map_size} bytes (npg = (mbuf part + "
                                f"vm_kmem_size {s.vm_kmem_size}) / PAGE_SIZE, in {8 * m.arch.ptr_size}-bit "
                                f"arithmetic)")

    def default_type_limit(self) -> int:
        return type_limit(self.sizes.vm_kmem_size)

    # --- malloc -------------------------------------------------------------------------------
    def malloc(self, size, mtype, flags=2, cpu=0):
        """malloc(9) (GIANT, MAY SLEEP without M_NOWAIT): M_NOWAIT, M_WAITOK, M_ZERO,
        M_USE_RESERVE, M_NULLOK.  Phases: limit, bucket, refill if empty, pop, zero."""
        try:                                     # (free in 3.11 when nothing is raised)
            f = FLAG_INT[flags]
        except (KeyError, TypeError):
            f = -1
        if (f < 0 or size.__class__ is not int or size < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or flags.__class__ is not int and flags.__class__ is not MallocFlags):   # True, 2.0: hash as flags
            size, f = check_args(size, flags, cpu, self.ncpus)
        try:
            if mtype._k is not self.kernel:
                self.kernel.bind_type(mtype)     # malloc_init, on first use
        except AttributeError:
            self.kernel.bind_type(mtype)         # not a MallocType: the TypeError
        self.lock_acquires += 1                  # s = splmem()
        if mtype.memuse >= mtype.limit:          # tested before adding: one call may overshoot
            return self._limit_reached(size, mtype, f, cpu)
        if size <= MAXALLOCSAVE:
            kb = self._bucket_of[size]
            kb.users.add(mtype)                  # ks_size |= 1 << indx
            free = kb.free
            if free:
                va = free.pop()                  # a chunk freed before: LIFO reuse
            else:
                fresh = kb.fresh
                if not fresh and not self._refill(kb, size, mtype, f, cpu):
                    return None
                va = fresh.pop()                 # never used since its page was mapped
                self.cold_allocs += 1
            self.ku_cnt[(va - self.kmembase) >> PAGE_SHIFT] -= 1
            nbytes = kb.size
        else:
            kb = self.buckets[bucketindx(size)]
            va = self._malloc_large(kb, size, mtype, f, cpu)
            if va is None:
                return None
            nbytes = self.ku_cnt[(va - self.kmembase) >> PAGE_SHIFT] << PAGE_SHIFT
        kb.calls += 1
        if self.touch is not None:
            self._touch_lines(mtype, kb, va, cpu)
        memuse = mtype.memuse + nbytes
        mtype.memuse = memuse
        mtype.inuse += 1
        mtype.calls += 1
        if memuse > mtype.maxused:
            mtype.maxused = memuse
        self.live[va] = mtype
        if f & ZERO:
            self.vm.zero(va, size)               # the requested size only, after splx
        return va

    def _limit_reached(self, size, mtype, f, cpu):
        """The type holds ks_limit or more: NULL for M_NOWAIT (and kalloc's M_NULLOK),
        else tsleep on the type until a free takes it below the limit."""
        if f & MAY_FAIL:
            return None
        self.limblocks[mtype] = min(U_SHORT_MAX, self.limblocks.get(mtype, 0) + 1)
        raise Deadlock(f"malloc({size}, '{mtype.name}', {flag_names(f)}) on cpu {cpu} sleeps on "
                       f"'{mtype.name}': malloc limit {mtype.limit} reached", mtype)

    def _refill(self, kb: Bucket, size, mtype, f, cpu) -> bool:
        """An empty bucket: one kmem_malloc of max(PAGE_SIZE, bucket size), carved from the
        top down so that the list runs in descending address order."""
        npg = -(-kb.size // PAGE_SIZE)
        va = self._kmem_malloc(npg << PAGE_SHIFT, f, size, mtype, cpu)
        if va is None:
            return False
        n = kb.elmpercl
        kb.total += n
        kb.refills += 1
        pg = (va - self.kmembase) >> PAGE_SHIFT
        self.ku_kb[pg] = kb
        self.ku_cnt[pg] = n
        kb.fresh.extend(range(va, va + (npg << PAGE_SHIFT), kb.size))   # top of the stack: highest chunk
        self._reused(va, npg)
        if self.invariants:
            self._poison_range(va, n, kb.size)
        return True

    def _malloc_large(self, kb: Bucket, size, mtype, f, cpu):
        """More than MAXALLOCSAVE: whole pages of their own, ku_pagecnt on the first page."""
        kb.users.add(mtype)
        npg = (size + PAGE_MASK) >> PAGE_SHIFT
        va = self._kmem_malloc(npg << PAGE_SHIFT, f, size, mtype, cpu)
        if va is None:
            return None
        kb.total += 1
        pg = (va - self.kmembase) >> PAGE_SHIFT
        self.ku_kb[pg] = kb
        if npg > MAX_PAGECNT:
            raise KernelPanic("malloc: allocation too large")   # after kmem_malloc, as in 4.8
        self.ku_cnt[pg] = npg
        self.large_live += 1
        self.large_pages += npg
        self.cold_allocs += 1
        self._reused(va, npg)
        return va

    def _reused(self, va: int, npg: int) -> None:
        """Pages of freed large blocks are in use again: their starts are no longer freed blocks."""
        if self.large_freed:
            self.large_freed.difference_update(range(va, va + (npg << PAGE_SHIFT), PAGE_SIZE))

    def _kmem_malloc(self, nbytes: int, f: int, size, mtype, cpu):
        """kmem_malloc(kmem_map, nbytes, flags): first-fit VA, then pages one by one.  No VA:
        panic unless the caller takes NULL.  No page: NULL after undoing, or VM_WAIT."""
        kmem_map = self.kmem_map
        va = kmem_map.findspace(nbytes, PAGE_SIZE)
        if va is None:
            if f & MAY_FAIL:
                return None
            raise KernelPanic(f"kmem_malloc({nbytes}): kmem_map too small: {kmem_map.size} total allocated")
        vm = self.vm
        colour = KMEM_OBJECT_COLOUR + ((va - self.machine.arch.kva_min) >> PAGE_SHIFT)   # kmem_object's pages
        if vm.map_pages(va, nbytes >> PAGE_SHIFT, kmem_page_class(f), colour):
            return va
        kmem_map.remove(va, nbytes)
        if f & MAY_FAIL:
            return None
        raise Deadlock(f"malloc({size}, '{mtype.name}', {flag_names(f)}) on cpu {cpu} sleeps on \"vmwait\": "
                       f"kmem_malloc({nbytes}) is short of pages ({self.machine.free_count} free)", "vmwait")

    # --- free -----------------------------------------------------------------------------------
    def free(self, addr, mtype, cpu=0):
        """free(9) (GIANT, never sleeps): the size comes from kmemusage, not from the type."""
        live = self.live
        try:                                     # the arithmetic first: an address that is no
            pg = (addr - self.kmembase) >> PAGE_SHIFT    # int (a float equal to a live one)
        except TypeError:                        # fails here, before it can leave ``live``
            return self._free_unusual(addr, mtype, live, cpu)
        t = live.pop(addr, live)                 # `live` as default: never a MallocType
        if (t is not mtype or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or addr.__class__ is not int):   # (an int subclass, numpy's, equal to a live one)
            return self._free_unusual(addr, mtype, t, cpu)
        if mtype._k is not self.kernel:
            self.kernel.bind_type(mtype)
        self.lock_acquires += 1
        kb = self.ku_kb[pg]                      # bucket[ku_indx]: the size is the page's
        if self.touch is not None:
            self._touch_lines(mtype, kb, addr, cpu)
        if kb.large:
            return self._free_large(addr, pg, kb, mtype)
        ku = self.ku_cnt
        cnt = ku[pg] + 1
        if cnt >= kb.elmpercl:                   # the whole page is free again
            if cnt > kb.elmpercl:
                raise KernelPanic("free: multiple frees")   # 4.8's only double-free check
            if len(kb.free) + len(kb.fresh) > kb.highwat:
                kb.couldfree += 1
        ku[pg] = cnt
        mtype.memuse -= kb.size
        mtype.inuse -= 1
        kb.free.append(addr)                     # at the head: LIFO

    def _touch_lines(self, mtype, kb: Bucket, va: int, cpu: int) -> None:
        """The shared lines a malloc or free writes under the lock (docs/research/mechanisms.md
        section 8.1): the global ``cpl`` (splhigh/splx), the type's counters, the bucket head and
        the kmemusage entry of the page (16 to a 64-byte line)."""
        touch = self.touch
        touch("cpl", cpu)
        touch(mtype, cpu)
        touch(kb, cpu)
        touch((self.kmemusage_va + ((va - self.kmembase) >> PAGE_SHIFT) * KMEMUSAGE_SIZE) >> 6, cpu)

    def _free_unusual(self, addr, mtype, popped, cpu) -> None:
        """A bad CPU, free(NULL) after the type check (4.8 order), or a bad free (always
        caught, the live entry put back first)."""
        if popped is not self.live:
            self.live[addr] = popped
        if cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            check_args(0, 2, cpu, self.ncpus, "free")
        if addr is None or (addr.__class__ is int and addr == 0):
            if getattr(mtype, "_k", None) is not self.kernel:
                self.kernel.bind_type(mtype)
            return
        raise bad_free(self, addr, mtype, self.live)

    def _free_large(self, addr, pg, kb: Bucket, mtype) -> None:
        """kmem_free of the block's pages: they go back to the VM (a TLB shootdown on SMP)."""
        npg = self.ku_cnt[pg]
        nbytes = npg << PAGE_SHIFT
        self.vm.unmap_pages(addr, npg)
        self.kmem_map.remove(addr, nbytes)
        mtype.memuse -= nbytes
        self.ku_kb[pg], self.ku_cnt[pg] = self.buckets[0], 0
        mtype.inuse -= 1
        kb.total -= 1
        self.large_live -= 1
        self.large_pages -= npg
        self.large_freed.add(addr)

    # --- realloc and sizes ------------------------------------------------------------------
    def realloc(self, addr, size, mtype, flags=2, cpu=0):
        """realloc(9) (GIANT, MAY SLEEP without M_NOWAIT): in place when size <= alloc and
        (size > alloc/2 or alloc == 16), else malloc, copy min(size, alloc) bytes (the whole
        old chunk), free.  NULL keeps the old block."""
        size, f = self._realloc_args(size, flags, cpu)
        if addr is None or (addr.__class__ is int and addr == 0):
            return self.malloc(size, mtype, f, cpu)
        self._realloc_owned(addr, mtype)
        alloc = self._alloc_size(addr)
        if size <= alloc and (size > alloc >> 1 or alloc == MINALLOCSIZE):
            self.lock_acquires += 1              # Giant: 4.8's realloc itself takes no spl
            return addr
        return self._realloc_move(addr, alloc, size, mtype, f, cpu)

    def _alloc_size(self, addr: int) -> int:
        pg = (addr - self.kmembase) >> PAGE_SHIFT
        kb = self.ku_kb[pg]
        return self.ku_cnt[pg] << PAGE_SHIFT if kb.large else kb.size

    def kmemusage(self, addr: int) -> tuple[int, int]:
        """(ku_indx, ku_freecnt or ku_pagecnt) of the page holding addr (btokup)."""
        pg = (addr - self.kmembase) >> PAGE_SHIFT
        return self.ku_kb[pg].indx, self.ku_cnt[pg]

    def usable_size(self, addr) -> int:
        """The bucket size, or the page-rounded size of a large block."""
        if addr.__class__ is not int or addr not in self.live:
            raise bad_free(self, addr, None, self.live, "usable_size")
        return self._alloc_size(addr)

    def was_chunk(self, addr: int) -> bool:
        if not self.kmembase <= addr < self.kmemlimit:
            return False
        indx = self.kmemusage(addr)[0]
        if MINBUCKET <= indx <= LARGEST_SMALL:   # a bucket page: every aligned chunk not live is free
            return addr & (min(1 << indx, PAGE_SIZE) - 1) == 0
        return indx == 0 and addr in self.large_freed

    # --- INVARIANTS (section 1.10), bound over malloc/free when the option is on --------------
    def _poison_range(self, va: int, n: int, size: int) -> None:
        """Fill the first min(size, 64) bytes of each of n chunks with 0xdeadc0de words."""
        copy = min(size, MAX_COPY)
        pattern = WEIRD_ADDR.to_bytes(self.word, "little") * (copy // self.word)
        for c in range(va, va + n * size, size):
            self.vm.write(c, pattern)

    def _malloc_invariants(self, size, mtype, flags=2, cpu=0):
        """malloc, then the pop-time check of the chunk's poison (a printf, as in 4.8), then
        spare0 = 0 and M_ZERO."""
        f = FLAG_INT.get(flags, -1)
        zero = f > 0 and f & ZERO
        va = KmemMapBackend.malloc(self, size, mtype, f & ~ZERO if zero else flags, cpu)
        if va is None:
            return None
        nbytes = self._alloc_size(va)
        if nbytes <= MAXALLOCSAVE:
            self._check_poison(va, size, nbytes)
        if zero:
            self.vm.zero(va, size)
        return va

    def _check_poison(self, va: int, size: int, nbytes: int) -> None:
        """The pop: type and link words back to 0xdeadc0de, the first changed word of the
        poison reported (printf, no panic), then spare0 = 0."""
        w, vm = self.word, self.vm
        weird = WEIRD_ADDR.to_bytes(w, "little")
        for i in (1, 3):
            if (i + 1) * w <= nbytes:
                vm.write(va + i * w, weird)
        data = vm.read(va, min(nbytes, MAX_COPY))
        for i in range(0, len(data), w):
            value = int.from_bytes(data[i:i + w], "little")
            if value != WEIRD_ADDR:
                self.msgbuf.append(f"Data modified on freelist: word {i // w} of object {va:#x} size {size} "
                                   f"previous type {self.freed_by.get(va, 'free')} ({value:#x} != {WEIRD_ADDR:#x})")
                break
        vm.write(va, bytes(w))

    def _free_invariants(self, addr, mtype, cpu=0):
        """The 4.8 free-list walk when the chunk looks free, free, then poison it."""
        nbytes = self._alloc_size(addr) if addr.__class__ is int and self.live.get(addr, self.live) is mtype else 0
        if 0 < nbytes <= MAXALLOCSAVE:
            self._check_free_list(addr)
        KmemMapBackend.free(self, addr, mtype, cpu)
        if 0 < nbytes <= MAXALLOCSAVE:
            self._poison_range(addr, 1, nbytes)
            self.freed_by[addr] = mtype.name

    def _check_free_list(self, addr: int) -> None:
        w, vm = self.word, self.vm
        if int.from_bytes(vm.read(addr, w), "little") != WEIRD_ADDR:
            return
        kb = self.ku_kb[(addr - self.kmembase) >> PAGE_SHIFT]
        for fp in kb.free_list():
            if int.from_bytes(vm.read(fp, w), "little") != WEIRD_ADDR:
                raise KernelPanic(f"free: free item {fp:#x} modified")

    # --- reports ---------------------------------------------------------------------------------
    # --- object caches (kalloc.cache): FreeBSD 4.8's vm_zone ----------------------------------
    def cache_init(self, cache) -> None:
        """zinit(name, size rounded up to the alignment, 0, 0, zalloc): zsize, a multiple of
        32 and of the alignment, keeps every item aligned, items being cut from page-aligned
        refills of ``zalloc`` pages, as many as one item needs (4.8's callers chose zalloc)."""
        a = cache.align or 1
        size = (cache.object_size + a - 1) // a * a
        z = zinit(self.kernel, cache.name, size, zalloc=-(-size // PAGE_SIZE))
        if z is None:
            raise KernelPanic(f"zinit({cache.name!r}) failed: no memory for the zone header")
        cache.impl = z

    def cache_alloc(self, cache, flags=2, cpu=0):
        """zalloc (4.8's zalloci on SMP: one lock); M_ZERO clears the object; the ctor runs
        at each allocation (4.8's zones have none)."""
        try:
            f = FLAG_INT[flags]
        except (KeyError, TypeError):
            f = -1
        if (f < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or flags.__class__ is not int and flags.__class__ is not MallocFlags):
            _, f = check_args(0, flags, cpu, self.ncpus, "cache_alloc")
        if cache.__class__ is not Cache or cache.destroyed or cache.kernel is not self.kernel:
            check_cache(self.kernel, cache, "cache_alloc")
        va = zalloc(cache.impl)
        if va is None:
            return None
        if f & ZERO:
            self.vm.zero(va, cache.object_size)
        cache.live.add(va)
        if cache.ctor is not None:
            cache.ctor(self.kernel, va)
        return va

    def cache_free(self, cache, addr, cpu=0) -> None:
        """zfree (zfreei on SMP)."""
        if cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            check_args(0, 2, cpu, self.ncpus, "cache_free")
        if cache.__class__ is not Cache or cache.destroyed or cache.kernel is not self.kernel:
            check_cache(self.kernel, cache, "cache_free")
        if addr.__class__ is not int or addr not in cache.live:
            raise cache_misuse(self.kernel, cache, addr)
        zfree(cache.impl, addr)
        cache.live.remove(addr)

    def cache_was_object(self, cache, addr: int) -> bool:
        z = cache.impl
        return z.is_item(addr) and addr not in z.live

    def cache_fini(self, cache) -> None:
        """4.8 has no zdestroy: the zone, its pages and its vm.zone line stay."""

    def cache_row(self, cache) -> dict:
        """The zone: a slab is one refill of ``zalloc`` pages, never given back."""
        z = cache.impl
        per = (z.zalloc * PAGE_SIZE) // z.zsize
        return {"name": cache.name, "object_size": cache.object_size, "slab_size": z.zsize,
                "align": cache.align, "objs_per_slab": per, "order": z.zalloc.bit_length() - 1,
                "active_objs": z.ztotal - z.zfreecnt, "num_objs": z.ztotal, "active_slabs": len(z.ranges),
                "num_slabs": len(z.ranges)}

    def classes(self) -> list:
        """The vmstat -m bucket view, one row per bucket 16 .. 8192."""
        return [{"size": kb.size, "objs_per_slab": kb.elmpercl, "slab_bytes": max(PAGE_SIZE, kb.size),
                 "first_offset": 0, "inuse": kb.total - kb.totalfree, "free": kb.totalfree,
                 "slabs": kb.refills, "calls": kb.calls, "highwat": kb.highwat, "couldfree": kb.couldfree}
                for kb in self.buckets[MINBUCKET:LARGEST_SMALL + 1]]

    def extra_stats(self) -> dict:
        s, km = self.sizes, self.kmem_map
        return {"kmem_map": {
            "kmembase": self.kmembase, "map_size": km.max_offset - km.min_offset, "map_used": km.size,
            "map_free": km.free_bytes, "mb_map_size": s.mb_map_size, "vm_kmem_size": s.vm_kmem_size,
            "type_limit": type_limit(s.vm_kmem_size), "maxusers": s.maxusers, "nmbclusters": s.nmbclusters,
            "nmbufs": s.nmbufs, "kmemusage_bytes": s.kmemusage_bytes, "large_live": self.large_live,
            "large_pages": self.large_pages,
            "large_buckets": [{"size": kb.size, "calls": kb.calls, "inuse": kb.total}
                              for kb in self.buckets[LARGEST_SMALL + 1:] if kb.calls],
            "msgbuf": list(self.msgbuf)}}

    def kmemstatistics(self) -> list:
        """(type, counters, ks_size bucket indices) for each type used on this kernel, in
        kmemstatistics order (malloc_init pushes at the head: newest first)."""
        out = []
        for t in reversed(self.kernel.types.values()):
            c = self.kernel.type_counters(t)
            if c["calls"]:
                out.append((t, c, [kb.indx for kb in self.buckets if t in kb.users]))
        return out

    def info_tables(self) -> list:
        """For ``kalloc info``: the bucket view, the per-type view, and kmem_map itself."""
        buckets = [{"Size": kb.size, "In Use": kb.total - kb.totalfree, "Free": kb.totalfree,
                    "Requests": kb.calls, "HighWater": kb.highwat, "Couldfree": kb.couldfree}
                   for kb in self.buckets[MINBUCKET:] if kb.indx <= LARGEST_SMALL or kb.calls]
        types = [{"Type": t.name, "InUse": c["inuse"], "MemUse (K)": (c["memuse"] + 1023) // 1024,
                  "HighUse (K)": (c["maxused"] + 1023) // 1024, "Limit (K)": (c["limit"] + 1023) // 1024,
                  "Requests": c["calls"], "Type Limit": self.limblocks.get(t, 0), "Kern Limit": 0,
                  "Size(s)": size_names(used)}
                 for t, c, used in self.kmemstatistics()]
        km = self.extra_stats()["kmem_map"]
        summary = [{k: km[k] for k in ("map_size", "map_used", "map_free", "mb_map_size", "vm_kmem_size",
                                       "type_limit", "maxusers", "large_live", "large_pages")}]
        return [("Memory statistics by bucket size", buckets), ("Memory statistics by type", types),
                ("kmem_map", summary)]


def vmstat_m(backend: KmemMapBackend) -> str:
    """The text 4.8's ``vmstat -m`` prints for this kernel (usr.bin/vmstat/vmstat.c domem)."""
    kbs = [kb for kb in backend.buckets[MINBUCKET:] if kb.calls]
    stats = backend.kmemstatistics()
    out = ["Memory statistics by bucket size\n", "Size   In Use   Free   Requests  HighWater  Couldfree\n"]
    totfree = 0
    for kb in kbs:
        out.append("%4d" % kb.size if kb.size < 1024 else "%3dK" % (kb.size >> 10))
        out.append(" %8d %6d %10d %7d %10d\n" % (kb.total - kb.totalfree, kb.totalfree, kb.calls,
                                                 kb.highwat, kb.couldfree))
        totfree += kb.size * kb.totalfree
    out.append("\nMemory usage type by bucket size\nSize  Type(s)\n")
    for kb in kbs:
        first, ln = True, 8
        for t, _c, used in stats:
            if kb.indx not in used:
                continue
            ln += 2 + len(t.name)
            if first:
                out.append("%4d  %s" % (kb.size, t.name) if kb.size < 1024 else "%3dK  %s" % (kb.size >> 10, t.name))
            else:
                out.append(",")
            if ln >= 79:
                out.append("\n\t ")
                ln = 10 + len(t.name)
            if not first:
                out.append(" " + t.name)
            first = False
        out.append("\n")
    out.append("\nMemory statistics by type                          Type  Kern\n"
               "        Type  InUse MemUse HighUse  Limit Requests Limit Limit Size(s)\n")
    totuse = totreq = 0
    for t, c, used in stats:
        out.append("%13s%6d%6dK%7dK%6dK%9d%5d%6d" % (
            t.name, c["inuse"], (c["memuse"] + 1023) // 1024, (c["maxused"] + 1023) // 1024,
            (c["limit"] + 1023) // 1024, c["calls"], backend.limblocks.get(t, 0), 0))
        out.append("  " + size_names(used) + "\n")
        totuse += c["memuse"]
        totreq += c["calls"]
    out.append("\nMemory Totals:  In Use    Free    Requests\n")
    out.append("              %7dK %6dK    %8d\n" % ((totuse + 1023) // 1024, (totfree + 1023) // 1024, totreq))
    return "".join(out)


@hookimpl
def kalloc_backends():
    return [KmemMapBackend]
