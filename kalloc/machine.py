"""The simulated machine: CPUs, physical memory, page frames and the free-page queues.

Deterministic: nothing here reads a clock or an unseeded random source.

Physical memory
---------------
RAM is an array of 4 KiB page frames numbered by pfn (physical address >> PAGE_SHIFT).
A frame's bytes exist only once something writes them: ``PhysMem.frames`` is a dict
pfn -> bytearray, and reading a frame that was never written gives zeros.  So
``boot(physmem="4G", ncpus=64)`` costs one ``bytearray(npages)`` of page states (1 MiB)
and nothing else until memory is used.  Above ``DENSE_PAGES`` pages the page states are
``PageStates``, 64 KiB pieces made on first use, so the largest memory an arch allows
(``Arch.physmem_max``: 4 GiB on i386, 4 TiB on amd64) boots in a few MiB of the host's.

The free-page queues (FreeBSD 4 vm_page.c, see docs/research/kmem_map.md section 2.3)
------------------------------------------------------------------------------
vm_page_startup() hands every page to the free queues in ascending physical order
(vm_add_new_page), colour = pfn & 31 (PQ_L2_SIZE = 32 in GENERIC).  In 4.8 each goes to the
**head** of its colour queue, so a queue reads, head to tail, from its highest page down to
its lowest::

      head                                                 tail
      [freed pages, LIFO] [boot pages: high ........... low]
        taken by normal requests -->     <-- taken by zero-preferring requests

vm_page_alloc(object, pindex, class) picks the queue (pindex + object colour) & 31.  A
normal request takes its head (highest address first), a zero-preferring one
(VM_ALLOC_ZERO) its tail (lowest first: vm_page_list_find's TAILQ_LAST).  If that queue is
empty, _vm_page_list_find takes the **head** of the first non-empty one of the pairs
(c+i, c-i) for i = 16 down to 1, farthest first, whatever the preference.

The ISA DMA issue of the 2003 slab allocator came from new zones, always requested with
VM_ALLOC_ZERO, eating the low 16 MiB that contigmalloc needs.  DragonFly fixed it on
2003-09-14 (161399b37f) in vm_add_new_page alone: new pages alternate between the head and
the tail of their queue (a per-queue flip-flop), still in ascending order, so both ends
start at high memory::

      head                                                            tail
      [freed] [boot pages 0, 2, 4 ...: high ... low] [1, 3, 5 ...: low ... high]
        normal requests -->                           <-- zero-preferring requests

Each kind of request takes every other page of a colour from the top down; one kind that
has taken its half goes on from the other half's *lowest* page up.  Which order the boot
builds is the **page policy** (``PAGE_POLICIES``).

The classes are the 2003 *states* NORMAL 0, INTERRUPT 1, SYSTEM 2, ZERO 3, and they
decide when a page may be taken at all (free_count against v_free_reserved and
v_interrupt_free_min).  The page cache queue, the inactive and active queues and the
page daemon are not modelled: the simulated kernel has no user pages, so the cache
queue is always empty (XXX: a "pressure" workload could add them).

Representation: each colour queue is ``_ColourQueue``: a list used as a stack for the pages
freed since boot (vm_page_free puts them at the head; kalloc has no PG_ZERO page, which 4.8
would put at the tail) and two lists of boot pages as arithmetic pfn ranges, those put at
the head and those put at the tail.  Taking and freeing are O(1); ``page_state`` (one byte
per page: 0 free, 1 in use) answers "is this page free" for contigmalloc's physical scan.
"""

from __future__ import annotations

import re

from attrs import define, field, frozen

from kalloc.coherence import LineModel

PQ_L2_SIZE = 32  # page colours (128 KiB cache colouring in FreeBSD 4)
PQ_PRIME1 = 9    # vm_page.h, with PQ_L2_SIZE 32
PQ_PRIME2 = 5    # vm_page.h, with PQ_L2_SIZE 32: vm_page_zero_idle's rover step


def zidle_lo(free: int) -> int:
    """ZIDLE_LO (i386 vm_machdep.c 4.8): below it the idle loop zeroes again."""
    return free * 2 // 3


def zidle_hi(free: int) -> int:
    """ZIDLE_HI: the idle loop stops when this many free pages are PG_ZERO."""
    return free * 4 // 5

# An object's pages are coloured (pindex + its pg_color).  _vm_object_allocate gives each
# object the colour after the last one's, PQ_L2_SIZE / 3 + PQ_PRIME1 further for an object
# this big, and vm_object_init makes kernel_object first (colour 0: kmem_alloc, the slab's
# kmem_slab_alloc), then kmem_object (kmem_malloc, kmem_map's pages).
KMEM_OBJECT_COLOUR = PQ_L2_SIZE // 3 + PQ_PRIME1     # 19

# vm_page_alloc page classes: 2003 *states*, not bits (docs/research/slab.md section 5.1).
VM_ALLOC_NORMAL = 0
VM_ALLOC_INTERRUPT = 1
VM_ALLOC_SYSTEM = 2
VM_ALLOC_ZERO = 3

# How vm_add_new_page queues the boot pages: False, all at the head; True, alternately at
# the head and the tail of their colour queue (the module docstring draws both).
PAGE_POLICIES = {
    "4.8": False,         # FreeBSD 4.8 vm_page.c 1.147.2.18
    "2003-08": False,     # DragonFly at the slab commit: 4.8's order, unchanged
    "2003-09-14": True,   # DragonFly vm_page.c 1.10 (161399b37f): the head/tail flip-flop
}


@frozen
class Arch:
    """Machine constants of one architecture."""

    name: str
    page_size: int
    ptr_size: int
    kva_min: int  # VM_MIN_KERNEL_ADDRESS
    kva_max: int  # VM_MAX_KERNEL_ADDRESS
    physmem_max: int  # the most physical memory a kernel of this arch may have

    @property
    def page_shift(self) -> int:
        return self.page_size.bit_length() - 1

    @property
    def page_mask(self) -> int:
        return self.page_size - 1

    @property
    def kva_size(self) -> int:
        return self.kva_max - self.kva_min


ARCHES = {
    # i386, KVA_PAGES 256, non-PAE: 0xBFEFF000 .. 0xFF800000 (1,066,405,888 bytes); 32-bit
    # physical addresses: at most 4 GiB.
    "i386": Arch("i386", 4096, 4, 0xBFEFF000, 0xFF800000, 1 << 32),
    # amd64: a 512 GiB kernel map at the top of the address space (kalloc's choice;
    # FreeBSD/DragonFly amd64 kernel maps are of this order), and at most 4 TiB of RAM
    # (kalloc's bound: eight times the kernel map).
    "amd64": Arch("amd64", 4096, 8, 0xFFFFFF8000000000, 0xFFFFFFFFFFFFF000, 1 << 42),
}

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value, what: str = "size") -> int:
    """Bytes from an int or a string like "4096", "64K", "16M", "4G" (binary units)."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a byte count or a string like '64M', not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative: {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2).upper()]
        raise ValueError(f"bad {what} {value!r}: expected bytes or a number with K, M, G or T")
    raise TypeError(f"{what} must be a byte count or a string like '64M', not {type(value).__name__}")


MIN_PHYSMEM = 4 << 20


def check_physmem(mem: int, arch: Arch) -> int:
    """``mem`` bytes if a kernel of ``arch`` may have that much memory, else the ValueError:
    a page multiple, at least MIN_PHYSMEM, at most ``arch.physmem_max``."""
    if mem % arch.page_size:
        raise ValueError(f"physmem {mem} is not a multiple of the page size ({arch.page_size})")
    if mem < MIN_PHYSMEM:
        raise ValueError(f"physmem {mem} is below the {MIN_PHYSMEM >> 20} MiB a kernel needs")
    if mem > arch.physmem_max:
        raise ValueError(f"physmem {mem} exceeds the {arch.physmem_max >> 30:,} GiB an {arch.name} kernel may have"
                         + (" (use arch='amd64')" if arch.name == "i386" else ""))
    return mem


@define(slots=True)
class PhysMem:
    """Page frames whose bytes exist once written (a dict of bytearrays)."""

    npages: int
    page_size: int
    frames: dict = field(factory=dict)

    def frame(self, pfn: int) -> bytearray:
        """The frame's bytes, created (zeroed) on first touch."""
        f = self.frames.get(pfn)
        if f is None:
            f = self.frames[pfn] = bytearray(self.page_size)
        return f

    def read(self, pfn: int, off: int, n: int) -> bytes:
        f = self.frames.get(pfn)
        return bytes(n) if f is None else bytes(f[off:off + n])

    def write(self, pfn: int, off: int, data) -> None:
        self.frame(pfn)[off:off + len(data)] = data

    def zero(self, pfn: int, off: int, n: int) -> None:
        """Zero part of a frame; an untouched frame is already zero."""
        f = self.frames.get(pfn)
        if f is not None:
            if n == self.page_size:
                del self.frames[pfn]
            else:
                f[off:off + n] = bytes(n)

    def is_zero(self, pfn: int) -> bool:
        f = self.frames.get(pfn)
        return f is None or not any(f)


DENSE_PAGES = 1 << 20      # up to this many pages (4 GiB), page states are one bytearray


class PageStates:
    """One byte per page frame (0 free, 1 in use) kept in pieces of ``PIECE`` pages, each
    made on its first write: the subset of bytearray that the page allocator and
    contigmalloc use (len, [pfn], [pfn] = state, slices, find, bytes()), in bounded host
    memory for any machine size.  A missing piece reads as free."""

    PIECE = 1 << 16

    __slots__ = ("npages", "pieces")

    def __init__(self, npages: int):
        self.npages = npages
        self.pieces: dict = {}

    def __len__(self) -> int:
        return self.npages

    def __getitem__(self, index):
        if isinstance(index, slice):
            return b"".join(self._runs(*index.indices(self.npages)[:2]))
        if not 0 <= index < self.npages:
            raise IndexError(f"page frame {index} out of range ({self.npages} pages)")
        piece = self.pieces.get(index // self.PIECE)
        return 0 if piece is None else piece[index % self.PIECE]

    def __setitem__(self, index: int, state: int) -> None:
        if not 0 <= index < self.npages:
            raise IndexError(f"page frame {index} out of range ({self.npages} pages)")
        n, off = divmod(index, self.PIECE)
        piece = self.pieces.get(n)
        if piece is None:
            piece = self.pieces[n] = bytearray(min(self.PIECE, self.npages - n * self.PIECE))
        piece[off] = state

    def __bytes__(self) -> bytes:
        return self[:]

    def _runs(self, start: int, end: int):
        """The states of pages [start, end) piece by piece (zeros for a missing piece)."""
        while start < end:
            n, off = divmod(start, self.PIECE)
            stop = min(end, (n + 1) * self.PIECE)
            piece = self.pieces.get(n)
            yield bytes(stop - start) if piece is None else bytes(piece[off:off + stop - start])
            start = stop

    def find(self, state: int, start: int = 0, end: int | None = None) -> int:
        """The first pfn in [start, end) in ``state``, or -1 (bytearray.find)."""
        end = self.npages if end is None else min(end, self.npages)
        while start < end:
            n, off = divmod(start, self.PIECE)
            stop = min(end, (n + 1) * self.PIECE)
            piece = self.pieces.get(n)
            if piece is None:
                if state == 0:
                    return start
            else:
                i = piece.find(state, off, off + stop - start)
                if i >= 0:
                    return n * self.PIECE + i
            start = stop
        return -1


@define(slots=True)
class _ColourQueue:
    """One colour's free queue, head to tail: ``freed`` (a stack, its top at the head), the
    boot pages put at the head (``fresh``: [lo, hi] pfn ranges, the last range and its
    ``hi`` nearest the head) and those put at the tail (``fresh_tail``: the last range and
    its ``hi`` nearest the tail).  ``step`` is the pfn distance between two pages of a
    range: PQ_L2_SIZE, or twice that when the boot pages alternate between the ends."""

    freed: list = field(factory=list)
    fresh: list = field(factory=list)
    fresh_tail: list = field(factory=list)
    zeroed: list = field(factory=list)     # PG_ZERO pages the idle loop put at the tail (last = tail)
    step: int = PQ_L2_SIZE

    def __bool__(self) -> bool:
        return bool(self.freed or self.fresh or self.fresh_tail or self.zeroed)

    def take_head(self) -> int:
        if self.freed:
            return self.freed.pop()
        if self.fresh:
            return self._take_high(self.fresh)
        if self.fresh_tail:
            return self._take_low(self.fresh_tail)
        return self.zeroed.pop(0)

    def take_tail(self) -> int:
        if self.zeroed:
            return self.zeroed.pop()
        if self.fresh_tail:
            return self._take_high(self.fresh_tail)
        if self.fresh:
            return self._take_low(self.fresh)
        return self.freed.pop(0)

    def head_is_zeroed(self) -> bool:
        """Only PG_ZERO pages left: the head is one of them."""
        return not (self.freed or self.fresh or self.fresh_tail)

    def _take_high(self, ranges: list) -> int:
        r = ranges[-1]
        pfn = r[1]
        if r[0] == pfn:
            ranges.pop()
        else:
            r[1] = pfn - self.step
        return pfn

    def _take_low(self, ranges: list) -> int:
        r = ranges[0]
        pfn = r[0]
        if r[1] == pfn:
            ranges.pop(0)
        else:
            r[0] = pfn + self.step
        return pfn

    def remove(self, pfn: int) -> None:
        """Take one given page off the queue (contigmalloc)."""
        step = self.step
        for ranges in (self.fresh, self.fresh_tail):
            for i, (lo, hi) in enumerate(ranges):
                if lo <= pfn <= hi and (pfn - lo) % step == 0:
                    ranges[i:i + 1] = [[a, b] for a, b in ((lo, pfn - step), (pfn + step, hi)) if a <= b]
                    return
        (self.zeroed if pfn in self.zeroed else self.freed).remove(pfn)

    def __len__(self) -> int:
        return (len(self.freed) + len(self.zeroed)
                + sum((hi - lo) // self.step + 1 for lo, hi in self.fresh + self.fresh_tail))


def _pageout_thresholds(npages: int) -> tuple[int, int, int]:
    """(v_free_min, v_free_reserved, v_interrupt_free_min) as vm_pageout.c computes them."""
    interrupt_free_min = 2
    pageout_free_min = 2 * 65536 // 4096 + interrupt_free_min  # 2*MAXBSIZE/PAGE_SIZE + 2 = 34
    pageout_page_count = 8 if npages < 2000 else 16
    free_min = 4 + (npages - 1024) // 200 if npages > 1024 else 4
    free_reserved = pageout_page_count + pageout_free_min + npages // 768 + PQ_L2_SIZE
    return free_min + free_reserved, free_reserved, interrupt_free_min


@define(slots=True, eq=False)
class Machine:
    """N CPUs and physical memory with the FreeBSD 4 free-page queues.

    ``counters`` holds plain integers that the allocator layers increment and the
    harness prices (see kalloc/costs.py): pages allocated and freed, bytes zeroed, ...
    """

    ncpus: int
    physmem: int
    arch: Arch
    page_policy: str
    phys: PhysMem = field(init=False)
    page_state: bytearray | PageStates = field(init=False)
    queues: list = field(init=False)
    free_count: int = field(init=False)
    v_free_min: int = field(init=False)
    v_free_reserved: int = field(init=False)
    v_interrupt_free_min: int = field(init=False)
    ipi_handler: object = None  # harness hook: callable(src, dst, func, args) or None
    passive_handler: object = None   # the same for passive messages (None: as ipi_handler)
    ipis: int = 0               # hardware IPIs sent (counted even when delivered at once)
    passive_ipis: int = 0       # messages queued without a hardware IPI (lwkt_send_ipiq3_passive)
    lines: LineModel = field(factory=LineModel)   # shared cache lines (kalloc.coherence)
    pg_zero: object = field(init=False)           # PG_ZERO per page (1: known to be zero), like page_state
    zero_count: int = 0         # vm_page_zero_count: free pages with PG_ZERO
    zero_state: int = 0         # vm_page_zero_idle's hysteresis
    free_rover: int = 0         # the colour it zeroes next
    pages_prezeroed: int = 0    # pages the idle loop zeroed

    def __attrs_post_init__(self) -> None:
        ps = self.arch.page_size
        npages = self.physmem // ps
        self.phys = PhysMem(npages, ps)
        self.page_state = bytearray(npages) if npages <= DENSE_PAGES else PageStates(npages)
        self.pg_zero = bytearray(npages) if npages <= DENSE_PAGES else PageStates(npages)
        self.queues = []
        flipflop = PAGE_POLICIES[self.page_policy]
        for c in range(PQ_L2_SIZE):
            q = _ColourQueue()
            n = (npages - 1 - c) // PQ_L2_SIZE + 1 if c < npages else 0    # pages of colour c
            if not flipflop:
                if n:
                    q.fresh.append([c, c + (n - 1) * PQ_L2_SIZE])
            else:   # the colour's k-th page went to the head when k is even, to the tail when odd
                q.step = 2 * PQ_L2_SIZE
                if n:
                    q.fresh.append([c, c + (n - 1) // 2 * q.step])
                if n > 1:
                    q.fresh_tail.append([c + PQ_L2_SIZE, c + PQ_L2_SIZE + (n - 2) // 2 * q.step])
            self.queues.append(q)
        self.free_count = npages
        self.v_free_min, self.v_free_reserved, self.v_interrupt_free_min = _pageout_thresholds(npages)

    @property
    def npages(self) -> int:
        return self.phys.npages

    # --- the page allocator -------------------------------------------------------
    def page_alloc(self, pclass: int, color: int = 0) -> int:
        """vm_page_alloc: a free pfn, or -1 when the class may not take one now."""
        free = self.free_count
        if free <= self.v_free_reserved:
            if pclass == VM_ALLOC_INTERRUPT:
                if free <= 0:
                    return -1
            elif pclass != VM_ALLOC_SYSTEM or free <= self.v_interrupt_free_min:
                return -1  # NORMAL/ZERO reclaim from the cache queue, which is always empty
        q = self.queues[color & (PQ_L2_SIZE - 1)]
        if not q:            # _vm_page_list_find: the head of another colour, whatever the class
            pfn = self._other_colour(color).take_head()
        elif pclass == VM_ALLOC_ZERO:
            pfn = q.take_tail()
        else:
            pfn = q.take_head()
        self.free_count = free - 1
        self.page_state[pfn] = 1
        if self.pg_zero[pfn]:            # it keeps PG_ZERO for the caller to see (and clear)
            self.zero_count -= 1
        return pfn

    def _other_colour(self, c: int) -> _ColourQueue:
        """The fallback scan of _vm_page_list_find: pairs c+i, c-i for i = 16 .. 1."""
        for i in range(PQ_L2_SIZE // 2, 0, -1):
            for cc in ((c + i) & (PQ_L2_SIZE - 1), (c - i) & (PQ_L2_SIZE - 1)):
                if self.queues[cc]:
                    return self.queues[cc]
        raise AssertionError("free_count > 0 but every colour queue is empty")

    def page_free(self, pfn: int) -> None:
        """vm_page_free: back to the head of its colour queue (reused first)."""
        if not self.page_state[pfn]:
            raise AssertionError(f"vm_page_free: freeing free page {pfn:#x}")
        self.page_state[pfn] = 0
        if self.pg_zero[pfn]:                # vm_page_free clears PG_ZERO
            self.pg_zero[pfn] = 0
        self.queues[pfn & (PQ_L2_SIZE - 1)].freed.append(pfn)
        self.free_count += 1

    def page_take(self, pfn: int) -> None:
        """Take one given free page off its queue (contigmalloc's run)."""
        if self.page_state[pfn]:
            raise AssertionError(f"page {pfn:#x} is not free")
        self.queues[pfn & (PQ_L2_SIZE - 1)].remove(pfn)
        self.page_state[pfn] = 1
        self.free_count -= 1
        if self.pg_zero[pfn]:
            self.pg_zero[pfn] = 0
            self.zero_count -= 1

    # --- the idle loop's page zeroing --------------------------------------------------------
    def zero_idle(self, calls: int) -> None:
        """vm_page_zero_idle, called ``calls`` times by an idle CPU's loop (each call long
        enough to zero one page; docs/research/mechanisms.md section 1).  Keep about half
        to four fifths of the free pages PG_ZERO: stop at ZIDLE_HI, and once there, wait
        until the count falls below ZIDLE_LO.  Each call takes the head page of the colour
        ``free_rover`` (another colour's if that queue is empty), zeroes it and puts it at
        the tail with PG_ZERO, where zero-preferring requests take first; then the rover
        moves PQ_PRIME2 colours on."""
        queues, misses = self.queues, 0
        while calls > 0 and misses < PQ_L2_SIZE:
            free = self.free_count
            if self.zero_count >= zidle_hi(free) or (self.zero_state and self.zero_count >= zidle_lo(free)):
                return
            self.zero_state = 0
            q = queues[self.free_rover]
            if not q and free:
                q = self._other_colour(self.free_rover)
            self.free_rover = (self.free_rover + PQ_PRIME2) & (PQ_L2_SIZE - 1)
            if not q or q.head_is_zeroed():
                misses += 1
                continue
            misses = 0
            pfn = q.take_head()
            self.phys.zero(pfn, 0, self.phys.page_size)
            self.pg_zero[pfn] = 1
            q.zeroed.append(pfn)
            self.zero_count += 1
            self.pages_prezeroed += 1
            calls -= 1
            if self.zero_count >= zidle_hi(self.free_count):
                self.zero_state = 1

    # --- inter-processor interrupts ------------------------------------------------
    def send_ipi(self, src: int, dst: int, func, *args) -> None:
        """Run func(*args) on CPU dst.  Outside the harness it runs before this returns;
        the harness installs ``ipi_handler`` to charge and delay it."""
        self.ipis += 1
        if self.ipi_handler is None:
            func(*args)
        else:
            self.ipi_handler(src, dst, func, args)

    def send_ipi_passive(self, src: int, dst: int, func, *args) -> None:
        """Queue func(*args) for CPU dst without interrupting it (DragonFly 2010's
        lwkt_send_ipiq3_passive): dst runs it when it next processes its IPI queue."""
        self.passive_ipis += 1
        handler = self.passive_handler or self.ipi_handler
        if handler is None:
            func(*args)
        else:
            handler(src, dst, func, args)
