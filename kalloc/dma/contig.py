"""contigmalloc / contigfree: physically contiguous kernel memory, FreeBSD 4.8 vm_page.c.

Deterministic: a first-fit scan of the page array from physical address 0.

docs/research/kmem_map.md section 3 is the source; this is contigmalloc1 step by step.
Everything else in the kernel gets pages one at a time from the free queues (highest
first, kalloc.machine), so a VA range is physically scattered.  A driver whose device
cannot scatter (an ISA DMA buffer, a NIC descriptor ring) needs a *run* of consecutive
free page frames, and contigmalloc1 finds one by walking ``vm_page_array`` -- here
``machine.page_state``, one byte per pfn, 0 = free -- from the bottom::

    pfn    0    1    2    3    4    5    6    7    8    9   10   11   12   13
         [use][   ][   ][use][   ][   ][   ][   ][use][   ][   ][   ][   ][   ]
                ^ candidate 1: free, in range, aligned, run fits its boundary window
                     run 1..4 needs 1,2,3,4: page 3 in use -> start = 2, scan again
                               ^ candidate 4: run 4..7 all free -> taken
    request: 4 pages (16 KiB), low 0, high 0xffffff, alignment 1, boundary 64 KiB

A page is a candidate when it is free (the free or cache queue: the simulation has
no cache queue), ``low <= phys < high``, ``phys % alignment == 0`` and the whole run
``[phys, phys + size - 1]`` lies in one ``boundary``-aligned window (boundary 0: no
window).  The first candidate whose ``phys + size`` exceeds ``high`` ends the pass;
otherwise the pages after it must be free too, or ``start`` moves one page past the
candidate and the scan resumes.  Two passes at most; between them 4.8 *launders* the
inactive and active queues (cleans and caches pageable pages) and the second pass
resumes at ``start``, which is not reset.  The simulated kernel has no pageable pages
(every page is wired by an allocator), so laundering finds nothing and pass 2 ends as
pass 1 did: kept so that the algorithm reads like the original.

The run is taken off the free queues (``machine.page_take``), not zeroed, given kernel
VA first fit (``kernel_map.findspace``, page aligned) and entered page by page.
``type`` and ``flags`` are never used ("XXX struct malloc_type is unused for
contig*()"): no malloc_type accounting, no M_ZERO, and M_NOWAIT does not stop 4.8 from
sleeping in the launderer.

Quirks kept
-----------
* ``high`` is exclusive for the candidate (phys < high) but the run must satisfy
  phys + size <= high: ISA callers pass high = 0xffffff, so a run can never end at
  16 MiB exactly -- the last page below 16 MiB is unusable to them.
* ``alignment`` 0 passes the power-of-two test and then admits only physical address 0
  (phys & (0 - 1) == phys); ``boundary`` 0 means no boundary.
* A request larger than a non-zero boundary can never succeed.
* ``round_page(size)`` is computed in the kernel's word: on i386 a size in the last page
  below 4 GiB (0xfffff001 to 0xffffffff) rounds to 0 and panics as size 0.
* If no KVA is left the run is *lost* ("XXX we almost never run out of kernel virtual
  space"): counted in ``lost_pages``.

Speed
-----
physmem may be 4 GiB = 1M pages, so ``find_run`` does not test page by page: it jumps
to the next page that satisfies the arithmetic tests (alignment, boundary window), to
the next free page with ``bytearray.find``, and after a failed run to the page past the
first page in use.  Every candidate skipped that way would have failed its run check at
that same page, so the answer is the page-by-page answer (tests/test_contig.py checks
both on random page arrays with hypothesis).

Checks kalloc adds (4.8 does none)
----------------------------------
``low > high`` is a ValueError (4.8 just finds nothing), and so is a size that does not fit
the architecture's ``u_long`` (a C caller could not pass it).  ``contigfree`` of an address
contigmalloc did not return, or with a size that rounds to another page count, raises
``BadFree``: 4.8's contigfree is kmem_free(kernel_map, addr, size) and would unmap
whatever lies there, leaking or tearing out pages.

XXX: the cache queue, the launderer and vm_page_array holes (the scan stops at
v_page_count, which only matters above the holes) are not modelled; a run that would
extend past the end of the page array counts as not free (4.8 reads past the array).
"""

from __future__ import annotations

import operator
import re

from attrs import define, field

from kalloc.dma import existing_state, kernel_state
from kalloc.errors import BadFree, KernelPanic, WildFree
from kalloc.flags import plain_flags
from kalloc.malloc import MallocType

ISA_LIMIT = 0x1000000  # RAM_END / ISARAM_END: the 24-bit ISA address space


@define(slots=True)
class ContigState:
    """A kernel's live contigmalloc runs (addr -> (size, first pfn)) and counters."""

    live: dict = field(factory=dict)
    calls: int = 0
    failures: int = 0
    pages_in_use: int = 0
    lost_pages: int = 0

    def stats(self) -> dict:
        return {"calls": self.calls, "failures": self.failures, "live": len(self.live),
                "pages_in_use": self.pages_in_use, "lost_pages": self.lost_pages}


def check_uint(who: str, name: str, value) -> int:
    """An argument that C declares unsigned: a TypeError or ValueError that names it."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{who}: {name} must be an integer, not {type(value).__name__}")
    value = operator.index(value)
    if value < 0:
        raise ValueError(f"{who}: {name} must not be negative, got {value}")
    return value


def find_run(state: bytearray, npg: int, low: int, high: int, alignment: int, boundary: int,
             shift: int) -> int | None:
    """contigmalloc1's two passes over the page array: the first pfn of ``npg`` free
    pages meeting the tests, or None.  ``state`` is one byte per pfn, 0 = free."""
    start = 0
    for _pass in range(2):
        pfn, start = _scan(state, start, npg, low, high, alignment, boundary, shift)
        if pfn is not None:
            return pfn
        # Laundering the inactive and active queues would go here: nothing is pageable
        # in the simulated kernel, so the next pass resumes at ``start`` over the same
        # page array.
    return None


def _scan(state: bytearray, start: int, npg: int, low: int, high: int, alignment: int,
          boundary: int, shift: int) -> tuple[int | None, int]:
    """One pass (the ``again:`` loop): (pfn, start) on success, (None, start) when the
    first candidate is missing or ends above ``high``."""
    n = len(state)
    size = npg << shift
    if boundary and size > boundary:
        return None, start                      # no window can hold the run
    astep = alignment >> shift if alignment > (1 << shift) else 1
    bpages = boundary >> shift
    first = -(-low >> shift)                     # lowest pfn with phys >= low
    limit = min(n, -(-high >> shift))            # pfns with phys < high
    i = max(start, first)
    while True:
        # The lowest pfn >= i that passes the arithmetic tests.
        if alignment == 0:
            if i > 0:
                return None, start
        elif astep > 1:
            i = -(-i // astep) * astep
        if bpages and i % bpages + npg > bpages:
            i += bpages - i % bpages             # next window (aligned: bpages >= astep here)
        if i >= limit:
            return None, start
        if state[i]:
            i = state.find(0, i + 1, limit)      # next free page
            if i < 0:
                return None, start
            continue
        if (i << shift) + size > high:
            return None, start
        end = i + npg
        used = state.find(1, i, min(end, n))
        if used < 0 and end <= n:
            return i, start
        # Candidates up to ``used`` would all fail at ``used``: the page-by-page scan
        # visits them (start = candidate + 1 each time) and finds the same next one.
        start = i = used + 1 if used >= 0 else n


def contigmalloc(kernel, size, mtype, flags, low, high, alignment, boundary) -> int | None:
    """contigmalloc(9): ``size`` bytes of physically contiguous pages in [low, high),
    mapped in kernel VA; None when no run qualifies.  ``mtype`` (a MallocType, or None)
    and ``flags`` (malloc flags) are checked but not used, as in 4.8.  (MAY SLEEP in 4.8:
    the launderer; never here.)"""
    who = "contigmalloc"
    if mtype is not None and not isinstance(mtype, MallocType):
        raise TypeError(f"contigmalloc: malloc type must be a kalloc.MallocType or None, not {type(mtype).__name__}")
    plain_flags(flags)
    size, low, high = check_uint(who, "size", size), check_uint(who, "low", low), check_uint(who, "high", high)
    alignment, boundary = check_uint(who, "alignment", alignment), check_uint(who, "boundary", boundary)
    if low > high:
        raise ValueError(f"contigmalloc: low {low:#x} is above high {high:#x}")
    m = kernel.machine
    ps, shift = m.arch.page_size, m.arch.page_shift
    word = (1 << 8 * m.arch.ptr_size) - 1
    if size > word:
        raise ValueError(f"contigmalloc: size {size:#x} does not fit the {8 * m.arch.ptr_size}-bit "
                         f"unsigned long of {m.arch.name}")
    size = (size + ps - 1) & ~(ps - 1) & word    # round_page, which wraps past the top page to 0
    if size == 0:
        raise KernelPanic("contigmalloc1: size must not be 0")
    if alignment & (alignment - 1):
        raise KernelPanic("contigmalloc1: alignment must be a power of 2")
    if boundary & (boundary - 1):
        raise KernelPanic("contigmalloc1: boundary must be a power of 2")
    st = kernel_state(kernel, ContigState)
    st.calls += 1
    npg = size >> shift
    pfn = find_run(m.page_state, npg, low, high, alignment, boundary, shift)
    if pfn is None:
        st.failures += 1
        return None
    for p in range(pfn, pfn + npg):
        m.page_take(p)
    vm = kernel.vm
    va = vm.kernel_map.findspace(size, ps)
    if va is None:
        st.lost_pages += npg                     # 4.8 keeps the pages off the queues
        st.failures += 1
        return None
    for i in range(npg):
        vm.enter(va + (i << shift), pfn + i)
    st.live[va] = (size, pfn)
    st.pages_in_use += npg
    return va


def contigfree(kernel, addr, size, mtype) -> None:
    """contigfree(9): give back a run contigmalloc returned, with the size it was asked
    for (any size that rounds to the same page count)."""
    size = check_uint("contigfree", "size", size)
    st = existing_state(kernel, ContigState)
    rec = None if st is None or not isinstance(addr, int) else st.live.get(addr)
    if rec is None:
        where = f"{addr:#x}" if isinstance(addr, int) else repr(addr)
        raise WildFree(f"contigfree: {where} is not a live contigmalloc allocation "
                       "(4.8's kmem_free would unmap whatever is mapped there)", None)
    ps = kernel.machine.arch.page_size
    rsize = (size + ps - 1) & ~(ps - 1)
    if rsize != rec[0]:
        raise BadFree(f"contigfree: {addr:#x} was contigmalloc'd with {rec[0]} bytes "
                      f"({rec[0] // ps} pages) but freed with size {size} ({rsize // ps} pages); "
                      "4.8 does not check and would unmap the wrong range", addr)
    del st.live[addr]
    npg = rec[0] // ps
    st.pages_in_use -= npg
    kernel.vm.unmap_pages(addr, npg)
    kernel.vm.kernel_map.remove(addr, rec[0])


_FREE_RUN = re.compile(rb"\x00+")


def free_below(kernel, limit: int = ISA_LIMIT) -> dict:
    """Free physical memory below ``limit`` (16 MiB by default): total bytes, and the
    largest run of consecutive free pages (its bytes and physical start address)."""
    m = kernel.machine
    shift = m.arch.page_shift
    below = bytes(m.page_state[:limit >> shift])
    best = max(_FREE_RUN.finditer(below), key=lambda r: r.end() - r.start(), default=None)
    return {
        "free_bytes": below.count(0) << shift,
        "largest_run_bytes": 0 if best is None else (best.end() - best.start()) << shift,
        "largest_run_phys": None if best is None else best.start() << shift,
    }


# --- physical memory as a device sees it ---------------------------------------------------
def _phys_pieces(m, paddr: int, n: int):
    """(pfn, offset, length) for each page frame [paddr, paddr + n) touches."""
    if paddr < 0 or paddr + n > m.physmem:
        raise ValueError(f"physical range {paddr:#x}-{paddr + n:#x} is outside RAM "
                         f"(0-{m.physmem:#x}): a real bus would float")
    shift, mask = m.arch.page_shift, m.arch.page_mask
    end = paddr + n
    while paddr < end:
        ln = min(mask + 1 - (paddr & mask), end - paddr)
        yield paddr >> shift, paddr & mask, ln
        paddr += ln


def phys_read(kernel, paddr: int, n: int) -> bytes:
    """Read physical memory directly, as a bus master does (no pmap)."""
    phys = kernel.machine.phys
    return b"".join([phys.read(pfn, off, ln) for pfn, off, ln in _phys_pieces(kernel.machine, paddr, n)])


def phys_write(kernel, paddr: int, data) -> None:
    """Write physical memory directly, as a bus master does (no pmap)."""
    data = memoryview(bytes(data))
    phys = kernel.machine.phys
    pos = 0
    for pfn, off, ln in list(_phys_pieces(kernel.machine, paddr, len(data))):
        phys.write(pfn, off, data[pos:pos + ln])
        pos += ln


def map_frames(kernel, pfns) -> int:
    """Take the given free page frames and map them, in that order, at fresh kernel VA:
    a buffer whose physical layout you choose (scattered, crossing a DMA window, above
    16 MiB) for experiments and tests.  Give it back with ``unmap_frames``."""
    pfns = list(pfns)
    m, vm = kernel.machine, kernel.vm
    ps = m.arch.page_size
    busy = [p for p in pfns if not 0 <= p < m.npages or m.page_state[p]]
    if busy or len(set(pfns)) != len(pfns) or not pfns:
        raise ValueError(f"map_frames: need distinct free page frames, got {pfns} (not free: {busy})")
    va = vm.kernel_map.findspace(len(pfns) * ps, ps)
    if va is None:
        raise MemoryError("map_frames: kernel_map is full")
    for i, pfn in enumerate(pfns):
        m.page_take(pfn)
        vm.enter(va + i * ps, pfn)
    return va


def unmap_frames(kernel, va: int, npages: int) -> None:
    """Undo ``map_frames``: unmap the pages and put them back on the free queues."""
    kernel.vm.unmap_pages(va, npages)
    kernel.vm.kernel_map.remove(va, npages * kernel.machine.arch.page_size)
