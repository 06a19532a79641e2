"""Kernel virtual memory: the kernel map, submaps and the pmap.

Deterministic: first fit, lowest address, as vm_map_findspace does.

::

    kernel_map  [VM_MIN_KERNEL_ADDRESS ........................... VM_MAX_KERNEL_ADDRESS)
                 | zone | kmem_map submap (FreeBSD 4) | zone |  hole  | large block | ...
                        |  bucket pages, mb_map ...   |
    pmap        VA page -> physical frame, page by page
    frames      pfn -> bytes (kalloc.machine.PhysMem)

A map hands out address ranges only; the pages behind them come from the page
allocator one by one and are entered into the pmap one by one, so a range that is
contiguous in VA is, in general, **not** contiguous in physical memory.
``vtophys(va)`` answers where a byte really is; ``read``/``write`` go through the
pmap and raise ``PageFault`` on an unmapped page.

VMMap keeps its free space as a sorted list of holes [start, end).  First fit walks the
holes from the lowest one and rounds each candidate start up to the alignment, which
gives the same answer as vm_map_findspace's walk over entries from ``first_free``.
``size`` is the sum of allocated lengths: the "total allocated" of FreeBSD's
"kmem_map too small" panic.  Entry coalescing and the vm_map_entry zone are not
modelled (XXX: they change no address a backend gets).
"""

from __future__ import annotations

from bisect import bisect_right

from attrs import define, field

from kalloc.errors import PageFault
from kalloc.machine import Machine


@define(slots=True, eq=False)
class VMMap:
    """An address range handed out first-fit; a submap is a VMMap over a parent's range."""

    name: str
    min_offset: int
    max_offset: int
    holes: list = field(init=False)   # sorted [start, end) pairs of free space
    size: int = 0                     # bytes allocated (vm_map.size)

    def __attrs_post_init__(self) -> None:
        self.holes = [[self.min_offset, self.max_offset]]

    def findspace(self, length: int, align: int) -> int | None:
        """vm_map_findspace + insert: the lowest aligned free range of ``length``."""
        mask = align - 1
        for i, h in enumerate(self.holes):
            start = (h[0] + mask) & ~mask
            end = start + length
            if end <= h[1]:
                self._carve(i, start, end)
                self.size += length
                return start
        return None

    def _carve(self, i: int, start: int, end: int) -> None:
        """Take [start, end) out of hole i: it shrinks, splits in two or goes."""
        h = self.holes[i]
        if h[0] < start:
            if end < h[1]:
                self.holes.insert(i + 1, [end, h[1]])
            h[1] = start
        elif end < h[1]:
            h[0] = end
        else:
            del self.holes[i]

    def remove(self, start: int, length: int) -> None:
        """vm_map_remove of an allocated range: give it back as a hole (merging)."""
        end = start + length
        holes = self.holes
        i = bisect_right(holes, [start, float("inf")])
        prev = holes[i - 1] if i else None
        nxt = holes[i] if i < len(holes) else None
        if (prev and prev[1] > start) or (nxt and nxt[0] < end) or start < self.min_offset or end > self.max_offset:
            raise ValueError(f"{self.name}: range {start:#x}-{end:#x} is not allocated")
        if prev and prev[1] == start:
            prev[1] = end
            if nxt and nxt[0] == end:
                prev[1] = nxt[1]
                del holes[i]
        elif nxt and nxt[0] == end:
            nxt[0] = start
        else:
            holes.insert(i, [start, end])
        self.size -= length

    def is_allocated(self, start: int, length: int) -> bool:
        i = bisect_right(self.holes, [start, float("inf")])
        prev = self.holes[i - 1] if i else None
        nxt = self.holes[i] if i < len(self.holes) else None
        return (self.min_offset <= start and start + length <= self.max_offset
                and not (prev and prev[1] > start) and not (nxt and nxt[0] < start + length))

    @property
    def free_bytes(self) -> int:
        return sum(e - s for s, e in self.holes)

    def submap(self, name: str, size: int, align: int) -> "VMMap":
        """kmem_suballoc: carve ``size`` bytes first-fit and manage them as a child map."""
        base = self.findspace(size, align)
        if base is None:
            raise MemoryError(f"kmem_suballoc: no room for {name} ({size} bytes)")
        return VMMap(name, base, base + size)


def _check_address(what: str, va) -> None:
    """k.read/k.write take an int address (a float would fail deep in the page walk)."""
    if va.__class__ is not int:
        raise TypeError(f"{what}: address must be an int, not {type(va).__name__}")


@define(slots=True, eq=False)
class KernelVM:
    """The kernel map, the kernel pmap, and memory access through them.

    Counters (plain ints, priced by the harness): ``pages_mapped``, ``pages_unmapped``,
    ``bytes_zeroed`` (bytes the kernel zeroes, whether or not the frame held data),
    ``bytes_copied`` (bcopy by the kernel: realloc, bounce buffers),
    ``tlb_shootdowns`` (unmapping on an SMP machine invalidates the other CPUs' TLBs),
    ``prezeroed_used`` (pages a zeroing request found already zero: PG_ZERO).
    """

    machine: Machine
    kernel_map: VMMap = field(init=False)
    pmap: dict = field(factory=dict)  # VA page number -> pfn
    pages_mapped: int = 0
    pages_unmapped: int = 0
    bytes_zeroed: int = 0
    bytes_copied: int = 0
    tlb_shootdowns: int = 0
    prezeroed_used: int = 0   # PG_ZERO pages that spared a zeroing request its bzero
    _shift: int = field(init=False)
    _mask: int = field(init=False)

    def __attrs_post_init__(self) -> None:
        a = self.machine.arch
        self.kernel_map = VMMap("kernel_map", a.kva_min, a.kva_max)
        self._shift = a.page_shift
        self._mask = a.page_mask

    # --- mapping ----------------------------------------------------------------------
    def map_pages(self, va: int, npages: int, pclass: int, color_base: int, zero: bool = False) -> bool:
        """Allocate npages pages one by one (page i gets colour color_base + i) and enter
        them at va; with ``zero``, zero each page that is not PG_ZERO (one the idle loop
        zeroed needs nothing: ``prezeroed_used``).  PG_ZERO is cleared on every page, as
        kmem_malloc and kmem_slab_alloc clear it.  On a refused page, undo and return False
        (the caller decides between sleeping, NULL and panic, as each original does)."""
        machine = self.machine
        pmap = self.pmap
        vpn = va >> self._shift
        for i in range(npages):
            pfn = machine.page_alloc(pclass, color_base + i)
            if pfn < 0:
                self.unmap_pages(va, i, shootdown=False)
                return False
            pmap[vpn + i] = pfn
        self.pages_mapped += npages
        pg_zero, ps = machine.pg_zero, self._mask + 1
        for i in range(npages):
            pfn = pmap[vpn + i]
            if pg_zero[pfn]:
                pg_zero[pfn] = 0
                if zero:
                    self.prezeroed_used += 1
            elif zero:
                machine.phys.zero(pfn, 0, ps)
                self.bytes_zeroed += ps
        return True

    def unmap_pages(self, va: int, npages: int, shootdown: bool = True) -> None:
        """Remove the mappings and free the pages (kmem_free / vm_map_remove)."""
        machine = self.machine
        pmap = self.pmap
        vpn = va >> self._shift
        for i in range(npages):
            machine.page_free(pmap.pop(vpn + i))
        self.pages_unmapped += npages
        if shootdown and npages and machine.ncpus > 1:
            self.tlb_shootdowns += 1

    def enter(self, va: int, pfn: int) -> None:
        """pmap_kenter one page."""
        self.pmap[va >> self._shift] = pfn
        self.pages_mapped += 1

    # --- access through the pmap ---------------------------------------------------
    def vtophys(self, va: int) -> int:
        pfn = self.pmap.get(va >> self._shift)
        if pfn is None:
            raise PageFault(va)
        return (pfn << self._shift) | (va & self._mask)

    def _pieces(self, va: int, n: int):
        """(pfn, offset, length) for each page the range [va, va+n) touches."""
        shift, mask, pmap = self._shift, self._mask, self.pmap
        end = va + n
        while va < end:
            pfn = pmap.get(va >> shift)
            if pfn is None:
                raise PageFault(va)
            off = va & mask
            ln = min(mask + 1 - off, end - va)
            yield pfn, off, ln
            va += ln

    def read(self, va: int, n: int) -> bytes:
        _check_address("read", va)
        if n.__class__ is not int:
            raise TypeError(f"read: length must be an int, not {type(n).__name__}")
        if n < 0:
            raise ValueError(f"read: negative length {n}")
        phys = self.machine.phys
        return b"".join([phys.read(pfn, off, ln) for pfn, off, ln in self._pieces(va, n)])

    def write(self, va: int, data) -> None:
        """Write bytes-like ``data`` (bytes, bytearray, memoryview, array) at ``va``."""
        _check_address("write", va)
        if data.__class__ is not bytes:    # a copy: what is written cannot change under us
            try:
                data = memoryview(data).tobytes()
            except TypeError:              # bytes(16) would be 16 zero bytes: no int, no list
                raise TypeError(f"write: data must be bytes-like (bytes, bytearray, memoryview), "
                                f"not {type(data).__name__}") from None
        phys = self.machine.phys
        off = va & self._mask
        if 0 < len(data) and off + len(data) <= self._mask + 1:   # within one page, as most are: one lookup
            pfn = self.pmap.get(va >> self._shift)
            if pfn is None:
                raise PageFault(va)
            phys.write(pfn, off, data)
            return
        pieces = list(self._pieces(va, len(data)))  # fault before writing anything
        pos = 0
        for pfn, off, ln in pieces:
            phys.write(pfn, off, data[pos:pos + ln])
            pos += ln

    def zero(self, va: int, n: int) -> None:
        """bzero through the pmap (one lookup when the range stays in one page, as most chunks
        do); counts the bytes the kernel zeroes, once zeroed."""
        phys = self.machine.phys
        off = va & self._mask
        if n and off + n <= self._mask + 1:      # within one page: most chunks
            pfn = self.pmap.get(va >> self._shift)
            if pfn is None:
                raise PageFault(va)
            phys.zero(pfn, off, n)
        else:
            for pfn, off, ln in self._pieces(va, n):
                phys.zero(pfn, off, ln)
        self.bytes_zeroed += n

    def copy(self, dst: int, src: int, n: int) -> None:
        """bcopy through the pmap; counts the bytes the kernel copies."""
        self.bytes_copied += n
        self.write(dst, self.read(src, n))

    def is_mapped(self, va: int) -> bool:
        return (va >> self._shift) in self.pmap
