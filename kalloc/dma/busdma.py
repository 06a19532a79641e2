"""bus_dma: tags, maps, segments and bounce pages, FreeBSD 4.8 busdma_machdep.c 1.16.2.2.

Deterministic: pools, waiting lists and callbacks are FIFOs; no clock.

docs/research/kmem_map.md section 4.5 is the source.  A driver describes what its device can
reach with a *tag* (lowaddr/highaddr: the window of physical addresses it can NOT
reach, exclusive/inclusive; alignment, boundary, maxsize, nsegments, maxsegsz), then
*loads* a kernel buffer into a *map* and gets a scatter/gather list of physical
segments.  The pmap decides the segments: a buffer contiguous in VA is, in general,
several physical pieces; pieces that follow each other physically are coalesced::

    buf (kernel VA)   [ page A        | page B        | page C        ]
    pmap              pfn 0x3000       pfn 0x3001      pfn 0x0c21
    segments          {0x3000000, 8192}                {0x0c21000, 4096}   (2 segments)

A page above ``lowaddr`` (an ISA tag: lowaddr 0xffffff) is *bounced*: the segment
points at a bounce page below lowaddr instead, and bus_dmamap_sync copies::

    client page (anywhere)            bounce page (< lowaddr, from contigmalloc)
    [....data....]  --PREWRITE-->     [data.......]   the device sees only this
    [....data....]  <--POSTREAD--     [data.......]   (data at offset 0 of the page)

Bounce pages come from a pool, each one contigmalloc(PAGE_SIZE, M_DEVBUF, M_NOWAIT, 0,
lowaddr, PAGE_SIZE, 0).  A load *reserves* the pages it needs first; if the pool is
short it does not fail: the map is queued and bus_dmamap_load returns EINPROGRESS
(flags, even BUS_DMA_NOWAIT, are ignored, as in 4.8).  When an unload gives pages
back, free_bounce_page re-tries the *first* waiting map only; once it is fully
reserved it moves to the callback list and the busdma software interrupt loads it and
calls the driver's callback: the deferred load.

Deviation from 4.8 (the issue asks for it): one bounce pool *per tag*, whose pages lie
below that tag's lowaddr, and one waiting list per pool.  4.8 has a single global
pool and a guard against tags with a lower lowaddr that never fires (bounce_lowaddr is
never updated), so a 4.8 tag can be handed a page it cannot reach.  MAX_BPAGES (128)
and the maxpages rule of bus_dmamap_create apply to each pool.

The software interrupt: 4.8 schedules it (setsoftvm) and it runs when the CPU leaves
splhigh, i.e. right after bus_dmamap_unload returns to a lower spl.  kalloc runs
``busdma_swi`` at the end of ``bus_dmamap_unload`` whenever free_bounce_page made it
pending, on the same CPU; ``busdma_swi(k)`` may also be called directly.

Everything else is as 4.8, quirks included: bus_dmamap_load honours neither boundary
nor maxsegsz nor alignment (only the non-bouncing ``bus_dmamap_load_mbuf`` path,
``_bus_dmamap_load_buffer``, splits at ``boundary``); segment counting starts at 1 and
an overflow prints "bus_dmamap_load: Too many segs! buf_len = 0x%lx" and passes EFBIG
to the callback with nseg = nsegments + 1; bus_dmamap_create on a tag without
BUS_DMA_ALLOCNOW returns the *number of pages* it got as its error on the first call;
a child tag that skips its filter-less parent bumps the parent's ref_count, not the
grandparent's it points to; bounce pages are never returned to the VM.  The tag, map
and bounce-page descriptors are malloc'd (52, 40 and 20 bytes, M_DEVBUF, M_NOWAIT) from
the booted backend, as on i386.

Checks kalloc adds: a non-power-of-two alignment or boundary, nsegments < 1 or a
negative address is a ValueError at tag creation (4.8 checks nothing and its
contigmalloc panics later); a load of an unmapped VA raises PageFault (4.8's
pmap_kextract returns 0 and the device would be pointed at physical page 0); loading or
destroying a map whose load returned EINPROGRESS before its callback ran is a KernelPanic
that says why (4.8 would link the map twice on the waiting list, a loop busdma_swi never
leaves, or free it while still linked).

XXX: user-space loads (bus_dmamap_load_uio with a process pmap) and the DMA-capable
filter functions of real buses are supported only as far as ``filter(arg, paddr)``.
"""

from __future__ import annotations

from errno import EBUSY, EFBIG, EINPROGRESS, EINVAL, ENOMEM

from attrs import define, field, frozen

from kalloc.dma import kernel_state
from kalloc.dma.contig import check_uint, contigfree, contigmalloc
from kalloc.errors import KernelPanic
from kalloc.flags import M_NOWAIT, M_WAITOK

BUS_SPACE_MAXADDR_24BIT = 0xFFFFFF
BUS_SPACE_MAXADDR_32BIT = 0xFFFFFFFF
BUS_SPACE_MAXADDR = 0xFFFFFFFF          # i386
BUS_SPACE_MAXSIZE_24BIT = 0xFFFFFF
BUS_SPACE_MAXSIZE = 64 * 1024

BUS_DMA_WAITOK = 0x00
BUS_DMA_NOWAIT = 0x01
BUS_DMA_ALLOCNOW = 0x02
BUS_DMAMEM_NOSYNC = 0x04
BUS_DMA_BUS4 = 0x80
BUS_DMA_MIN_ALLOC_COMP = BUS_DMA_BUS4   # "initial bounce allocation done"

# bus_dmasync_op_t: an enum, one op per call.
BUS_DMASYNC_PREREAD, BUS_DMASYNC_POSTREAD, BUS_DMASYNC_PREWRITE, BUS_DMASYNC_POSTWRITE = range(4)

MAX_BPAGES = 128
SIZEOF_TAG, SIZEOF_MAP, SIZEOF_BOUNCE_PAGE = 52, 40, 20   # i386 structs, malloc'd


@frozen
class BusDmaSegment:
    """bus_dma_segment_t: a physical (bus) address and a length."""

    ds_addr: int
    ds_len: int


@define(slots=True, eq=False)
class BouncePage:
    vaddr: int          # KVA of the bounce page
    busaddr: int        # its physical address
    datavaddr: int = 0  # KVA of the client data it stands for
    datacount: int = 0


@define(slots=True, eq=False)
class BouncePool:
    """The bounce pages of one tag (4.8: the global pool) and the maps waiting for them."""

    pages: list = field(factory=list)      # free pages, head first
    free_bpages: int = 0
    reserved_bpages: int = 0
    active_bpages: int = 0
    total_bpages: int = 0
    waiting: list = field(factory=list)    # bounce_map_waitinglist


@define(slots=True, eq=False)
class BusDmaTag:
    parent: "BusDmaTag | None"
    alignment: int
    boundary: int
    lowaddr: int
    highaddr: int
    filter: object
    filterarg: object
    maxsize: int
    nsegments: int
    maxsegsz: int
    flags: int
    kva: int
    ref_count: int = 1
    map_count: int = 0
    pool: BouncePool = field(factory=BouncePool)


@define(slots=True, eq=False)
class BusDmaMap:
    kva: int | None                      # the malloc'd struct (None: the static no-bounce map)
    bpages: list = field(factory=list)
    pagesneeded: int = 0
    pagesreserved: int = 0
    dmat: BusDmaTag | None = None        # saved by a deferred load
    buf: int = 0
    buflen: int = 0
    callback: object = None
    callback_arg: object = None


@define(slots=True)
class BusDma:
    """One kernel's bus_dma globals: the callback list, the static map, counters."""

    pools: list = field(factory=list)
    callbacklist: list = field(factory=list)
    swi_pending: bool = False
    nobounce: BusDmaMap = field(factory=lambda: BusDmaMap(None))
    loads: int = 0
    deferred_loads: int = 0
    failures: int = 0
    bounced_bytes: int = 0
    messages: list = field(factory=list)

    def stats(self) -> dict:
        return {
            "loads": self.loads,
            "deferred_loads": self.deferred_loads,
            "failures": self.failures,
            "bounced_bytes": self.bounced_bytes,
            "bounce_pages_in_use": sum(p.active_bpages for p in self.pools),
            "bounce_pages_total": sum(p.total_bpages for p in self.pools),
            "maps_waiting": sum(len(p.waiting) for p in self.pools),
        }



# argument name -> (its class, or None for a callable; whether None is allowed)
_ARG_TYPES = {"tag": (BusDmaTag, False), "parent": (BusDmaTag, True), "bmap": (BusDmaMap, True),
              "callback": (None, False), "filter": (None, True)}


def _check(who: str, **args) -> None:
    """The argument types the entry points share: ``tag`` a BusDmaTag, ``parent`` one or
    None, ``bmap`` a BusDmaMap or None (a map that never bounces), ``callback`` and
    ``filter`` callables (a filter may be None)."""
    for name, value in args.items():
        want, none_ok = _ARG_TYPES[name]
        if value is None and none_ok:
            continue
        if want is None and not callable(value):
            raise TypeError(f"{who}: {name} must be callable, not {type(value).__name__}")
        if want is not None and not isinstance(value, want):
            raise TypeError(f"{who}: {name} must be a {want.__name__}{' or None' if none_ok else ''}, "
                            f"not {type(value).__name__}")

def _devbuf(kernel):
    return kernel.malloc_type("devbuf", "device driver memory")


def _must_bounce(kernel, tag: BusDmaTag) -> bool:
    """lowaddr < ptoa(Maxmem): there is RAM the device cannot reach."""
    return tag.lowaddr < kernel.machine.physmem


def run_filter(tag: BusDmaTag, paddr: int) -> int:
    """1 if some tag up the chain says the device cannot reach ``paddr``."""
    while tag is not None:
        if tag.lowaddr < paddr <= tag.highaddr and (tag.filter is None or tag.filter(tag.filterarg, paddr)):
            return 1
        tag = tag.parent
    return 0


# --- tags ----------------------------------------------------------------------------------
def bus_dma_tag_create(kernel, parent, alignment, boundary, lowaddr, highaddr, maxsize, nsegments,
                       maxsegsz, flags, *, filter=None, filterarg=None, cpu: int = 0):
    """A tag: (0, tag), or (ENOMEM, None) if its struct or, with BUS_DMA_ALLOCNOW,
    its bounce pages cannot be had."""
    _check("bus_dma_tag_create", parent=parent, filter=filter)
    who = "bus_dma_tag_create"
    alignment, boundary = check_uint(who, "alignment", alignment), check_uint(who, "boundary", boundary)
    lowaddr, highaddr = check_uint(who, "lowaddr", lowaddr), check_uint(who, "highaddr", highaddr)
    maxsize, maxsegsz = check_uint(who, "maxsize", maxsize), check_uint(who, "maxsegsz", maxsegsz)
    nsegments, flags = check_uint(who, "nsegments", nsegments), check_uint(who, "flags", flags)
    if alignment & (alignment - 1) or boundary & (boundary - 1):
        raise ValueError(f"{who}: alignment ({alignment:#x}) and boundary ({boundary:#x}) "
                         "must be powers of 2 (boundary 0: none)")
    if nsegments < 1:
        raise ValueError(f"{who}: nsegments must be at least 1")
    kva = kernel.malloc(SIZEOF_TAG, _devbuf(kernel), M_NOWAIT, cpu)
    st = kernel_state(kernel, BusDma)
    if kva is None:
        st.failures += 1
        return ENOMEM, None
    mask = kernel.machine.arch.page_mask
    tag = BusDmaTag(parent, alignment, boundary, (lowaddr & ~mask) + mask, (highaddr & ~mask) + mask,
                    filter, filterarg, maxsize, nsegments, maxsegsz, flags, kva)
    st.pools.append(tag.pool)
    if parent is not None:
        tag.lowaddr = min(parent.lowaddr, tag.lowaddr)
        tag.highaddr = max(parent.highaddr, tag.highaddr)
        tag.boundary = max(parent.boundary, tag.boundary)   # "XXX Not really correct???"
        if tag.filter is None:
            tag.filter, tag.filterarg = parent.filter, parent.filterarg
            tag.parent = parent.parent                       # skip the parent ...
        if tag.parent is not None:
            parent.ref_count += 1                            # ... but count on it (as written)
    if _must_bounce(kernel, tag) and flags & BUS_DMA_ALLOCNOW:
        shift = kernel.machine.arch.page_shift
        if tag.pool.total_bpages << shift < maxsize:
            pages = (maxsize >> shift) - tag.pool.total_bpages
            if _alloc_bounce_pages(kernel, tag, pages, cpu) < pages:
                kernel.free(kva, _devbuf(kernel), cpu)
                st.failures += 1
                return ENOMEM, None
        tag.flags |= BUS_DMA_MIN_ALLOC_COMP
    return 0, tag


def bus_dma_tag_destroy(kernel, tag) -> int:
    """Drop a tag (and parents whose count reaches 0); EBUSY while it has maps."""
    if tag is not None:
        _check("bus_dma_tag_destroy", tag=tag)
        if tag.map_count:
            return EBUSY
        while tag is not None:
            parent = tag.parent
            tag.ref_count -= 1
            if tag.ref_count:
                break
            kernel.free(tag.kva, _devbuf(kernel))
            tag = parent
    return 0


# --- maps ----------------------------------------------------------------------------------
def bus_dmamap_create(kernel, tag, flags, cpu: int = 0):
    """A map: (error, map).  map is None (no bouncing ever) when the device reaches all
    RAM.  Otherwise bounce pages are added to the pool, up to a sane limit."""
    _check("bus_dmamap_create", tag=tag)
    error = 0
    bmap = None
    if _must_bounce(kernel, tag):
        kva = kernel.malloc(SIZEOF_MAP, _devbuf(kernel), M_NOWAIT, cpu)
        if kva is None:
            kernel_state(kernel, BusDma).failures += 1
            return ENOMEM, None
        bmap = BusDmaMap(kva)
        shift = kernel.machine.arch.page_shift
        maxpages = min(MAX_BPAGES, kernel.machine.npages - (tag.lowaddr >> shift))
        pool = tag.pool
        if not tag.flags & BUS_DMA_MIN_ALLOC_COMP or (tag.map_count > 0 and pool.total_bpages < maxpages):
            pages = min(maxpages - pool.total_bpages, tag.maxsize >> shift)
            error = _alloc_bounce_pages(kernel, tag, pages, cpu)   # a count, kept as the error
            if not tag.flags & BUS_DMA_MIN_ALLOC_COMP:
                if error == 0:
                    tag.flags |= BUS_DMA_MIN_ALLOC_COMP
            else:
                error = 0
    if error == 0:
        tag.map_count += 1
    return error, bmap


def bus_dmamap_destroy(kernel, tag, bmap) -> int:
    """Free a map; EBUSY while it holds bounce pages."""
    _check("bus_dmamap_destroy", tag=tag, bmap=bmap)
    if bmap is not None:
        _not_waiting("bus_dmamap_destroy", bmap, "free it while bounce_map_waitinglist still links it: "
                     "the deferred load would later run on freed memory")
        if bmap.bpages:
            return EBUSY
        kernel.free(bmap.kva, _devbuf(kernel))
    tag.map_count -= 1
    return 0


# --- DMA-safe memory -----------------------------------------------------------------------
def _dmamem_uses_malloc(kernel, tag) -> bool:
    return tag.maxsize <= kernel.machine.arch.page_size and not _must_bounce(kernel, tag)


def bus_dmamem_alloc(kernel, tag, flags, cpu: int = 0):
    """Memory the device reaches without bouncing: (0, vaddr, None) or (ENOMEM, None,
    None).  malloc for one page a device reaches anywhere, contigmalloc otherwise."""
    _check("bus_dmamem_alloc", tag=tag)
    mflags = M_NOWAIT if flags & BUS_DMA_NOWAIT else M_WAITOK
    if _dmamem_uses_malloc(kernel, tag):
        vaddr = kernel.malloc(tag.maxsize, _devbuf(kernel), mflags, cpu)
    else:
        vaddr = contigmalloc(kernel, tag.maxsize, _devbuf(kernel), mflags, 0, tag.lowaddr,
                             tag.alignment or 1, tag.boundary)
    if vaddr is None:
        kernel_state(kernel, BusDma).failures += 1
        return ENOMEM, None, None
    return 0, vaddr, None


def bus_dmamem_free(kernel, tag, vaddr, bmap) -> None:
    """Free bus_dmamem_alloc memory, making the same malloc/contigmalloc choice."""
    _check("bus_dmamem_free", tag=tag)          # any map but NULL is 4.x's own panic
    if bmap is not None:
        raise KernelPanic("bus_dmamem_free: Invalid map freed")
    if _dmamem_uses_malloc(kernel, tag):
        kernel.free(vaddr, _devbuf(kernel))
    else:
        contigfree(kernel, vaddr, tag.maxsize, _devbuf(kernel))


# --- loading -------------------------------------------------------------------------------
def bus_dmamap_load(kernel, tag, bmap, buf, buflen, callback, callback_arg, flags) -> int:
    """Map [buf, buf + buflen) (kernel VA) for the device: callback(arg, segments, nseg,
    error) is called and 0 returned, or -- bounce pages short -- EINPROGRESS is returned
    and the callback runs later from busdma_swi.  ``flags`` is ignored, as in 4.8."""
    _check("bus_dmamap_load", tag=tag, bmap=bmap, callback=callback)
    buf = check_uint("bus_dmamap_load", "buf", buf)
    buflen = check_uint("bus_dmamap_load", "buflen", buflen)
    st = kernel_state(kernel, BusDma)
    if bmap is None:
        bmap = st.nobounce
    _not_waiting("bus_dmamap_load", bmap, "queue it a second time: bounce_map_waitinglist becomes a loop "
                 "that busdma_swi never leaves")
    arch = kernel.machine.arch
    ps, mask = arch.page_size, arch.page_mask
    vtophys = kernel.vtophys
    if _must_bounce(kernel, tag) and bmap.pagesneeded == 0:
        vaddr = buf & ~mask
        while vaddr < buf + buflen:
            bmap.pagesneeded += run_filter(tag, vtophys(vaddr))
            vaddr += ps
    if bmap.pagesneeded and _reserve_bounce_pages(tag, bmap):
        bmap.dmat, bmap.buf, bmap.buflen = tag, buf, buflen
        bmap.callback, bmap.callback_arg = callback, callback_arg
        tag.pool.waiting.append(bmap)
        st.deferred_loads += 1
        return EINPROGRESS
    st.loads += 1
    segs = [[0, 0]]                               # the tag's segment array, as filled
    seg = 1
    nextpaddr = 0
    vaddr = buf
    while True:                                   # do { ... } while (buflen > 0)
        paddr = vtophys(vaddr)
        size = min(ps - (paddr & mask), buflen)
        if bmap.pagesneeded and run_filter(tag, paddr):
            paddr = _add_bounce_page(tag, bmap, vaddr, size)
        cur = segs[-1]
        if cur[1] == 0:
            cur[0], cur[1] = paddr, size
        elif paddr == nextpaddr:
            cur[1] += size
        else:
            seg += 1
            if seg > tag.nsegments:
                break
            segs.append([paddr, size])
        vaddr += size
        nextpaddr = paddr + size
        buflen -= size
        if not buflen:
            break
    error = 0
    if buflen:
        st.messages.append(f"bus_dmamap_load: Too many segs! buf_len = {buflen:#x}")
        st.failures += 1
        error = EFBIG
    callback(callback_arg, [BusDmaSegment(a, n) for a, n in segs], seg, error)
    return 0


def _not_waiting(who: str, bmap: BusDmaMap, what_48_does: str) -> None:
    """A map whose load returned EINPROGRESS is on its pool's waiting list until bounce
    pages free up; loading or destroying it meanwhile is a driver bug that 4.8 does not
    catch (it would ``what_48_does``)."""
    if bmap.dmat is not None and bmap in bmap.dmat.pool.waiting:
        name = "the static no-bounce map" if bmap.kva is None else f"map {bmap.kva:#x}"
        raise KernelPanic(f"{who}: {name} still waits for bounce pages (its load returned EINPROGRESS "
                          f"and its callback has not run); 4.8 would {what_48_does}")


def bus_dmamap_load_mbuf(kernel, tag, bmap, chain, callback2, callback_arg, flags) -> int:
    """Load an mbuf chain -- here a list of (m_data, m_len) kernel-VA pieces -- with
    _bus_dmamap_load_buffer: never bounces, splits at page ends and at ``boundary``,
    coalesces within ``maxsegsz``.  callback2(arg, segments, nseg, total, error);
    returns the error (EINVAL if the chain exceeds maxsize, EFBIG if out of segments)."""
    _check("bus_dmamap_load_mbuf", tag=tag, bmap=bmap, callback=callback2)
    if _must_bounce(kernel, tag) and bmap is None:
        raise KernelPanic("bus_dmamap_load_mbuf: No support for bounce pages!")
    pieces = [(check_uint("bus_dmamap_load_mbuf", "m_data", d), check_uint("bus_dmamap_load_mbuf", "m_len", n))
              for d, n in chain]
    total = sum(n for _, n in pieces)
    segs = [[0, 0] for _ in range(tag.nsegments)]
    nsegs = error = 0
    if total <= tag.maxsize:
        lastaddr = 0
        for i, (data, length) in enumerate(pieces):
            error, lastaddr, nsegs = _load_buffer(kernel, tag, segs, data, length, lastaddr, nsegs, i == 0)
            if error:
                break
    else:
        error = EINVAL
    st = kernel_state(kernel, BusDma)
    st.loads += 1
    if error:
        st.failures += 1
        callback2(callback_arg, [], 0, 0, error)           # "no valid mappings"
    else:
        callback2(callback_arg, [BusDmaSegment(a, n) for a, n in segs[:nsegs + 1]], nsegs + 1, total, 0)
    return error


def _load_buffer(kernel, tag, segs, vaddr, buflen, lastaddr, seg, first):
    """_bus_dmamap_load_buffer: one linear piece into ``segs`` from index ``seg``;
    (error, lastaddr, seg)."""
    arch = kernel.machine.arch
    ps, mask = arch.page_size, arch.page_mask
    boundary = tag.boundary
    bmask = ~(boundary - 1)
    while buflen > 0:
        curaddr = kernel.vtophys(vaddr)
        sgsize = min(ps - (curaddr & mask), buflen)
        if boundary:
            sgsize = min(sgsize, ((curaddr + boundary) & bmask) - curaddr)   # stop at the window
        if first:
            segs[seg] = [curaddr, sgsize]
            first = False
        elif (curaddr == lastaddr and segs[seg][1] + sgsize <= tag.maxsegsz
              and (not boundary or segs[seg][0] & bmask == curaddr & bmask)):
            segs[seg][1] += sgsize
        else:
            seg += 1
            if seg >= tag.nsegments:
                break
            segs[seg] = [curaddr, sgsize]
        lastaddr = curaddr + sgsize
        vaddr += sgsize
        buflen -= sgsize
    return (EFBIG if buflen else 0), lastaddr, seg


# --- sync, unload and the software interrupt ---------------------------------------------------
def bus_dmamap_sync(kernel, tag, bmap, op) -> None:
    """Copy through the map's bounce pages: PREWRITE client -> bounce, POSTREAD bounce ->
    client; PREREAD and POSTWRITE do nothing."""
    _check("bus_dmamap_sync", tag=tag, bmap=bmap)
    if op not in (BUS_DMASYNC_PREREAD, BUS_DMASYNC_POSTREAD, BUS_DMASYNC_PREWRITE, BUS_DMASYNC_POSTWRITE):
        raise ValueError(f"bus_dmamap_sync: unknown op {op!r} (one BUS_DMASYNC_* per call)")
    if bmap is None or not bmap.bpages or op in (BUS_DMASYNC_PREREAD, BUS_DMASYNC_POSTWRITE):
        return
    st = kernel_state(kernel, BusDma)
    copy = kernel.vm.copy
    for bp in bmap.bpages:
        if op == BUS_DMASYNC_PREWRITE:
            copy(bp.vaddr, bp.datavaddr, bp.datacount)
        else:
            copy(bp.datavaddr, bp.vaddr, bp.datacount)
        st.bounced_bytes += bp.datacount


def bus_dmamap_unload(kernel, tag, bmap) -> None:
    """Release the map's bounce pages; a waiting map that can now be served is loaded
    by busdma_swi before this returns (its callback runs)."""
    _check("bus_dmamap_unload", tag=tag, bmap=bmap)
    if bmap is None:
        return
    while bmap.bpages:
        _free_bounce_page(kernel, tag, bmap.bpages.pop(0))
    st = kernel_state(kernel, BusDma)
    if st.swi_pending:
        busdma_swi(kernel)


def busdma_swi(kernel) -> None:
    """The busdma software interrupt: load each map on the callback list again (its
    pages are reserved now) so that its driver's callback runs: the deferred load."""
    st = kernel_state(kernel, BusDma)
    st.swi_pending = False
    while st.callbacklist:
        m = st.callbacklist.pop(0)
        bus_dmamap_load(kernel, m.dmat, m, m.buf, m.buflen, m.callback, m.callback_arg, 0)


# --- the bounce pool -------------------------------------------------------------------------
def _alloc_bounce_pages(kernel, tag, numpages: int, cpu: int) -> int:
    """Add up to ``numpages`` pages below tag.lowaddr to the tag's pool; how many came."""
    devbuf = _devbuf(kernel)
    ps = kernel.machine.arch.page_size
    pool = tag.pool
    count = 0
    while numpages > 0:
        desc = kernel.malloc(SIZEOF_BOUNCE_PAGE, devbuf, M_NOWAIT, cpu)
        if desc is None:
            break
        vaddr = contigmalloc(kernel, ps, devbuf, M_NOWAIT, 0, tag.lowaddr, ps, 0)
        if vaddr is None:
            kernel.free(desc, devbuf, cpu)
            break
        pool.pages.append(BouncePage(vaddr, kernel.vtophys(vaddr)))
        pool.total_bpages += 1
        pool.free_bpages += 1
        count += 1
        numpages -= 1
    return count


def _reserve_bounce_pages(tag, bmap) -> int:
    """Reserve what the pool can give; the number of pages still missing."""
    pool = tag.pool
    pages = min(pool.free_bpages, bmap.pagesneeded - bmap.pagesreserved)
    pool.free_bpages -= pages
    pool.reserved_bpages += pages
    bmap.pagesreserved += pages
    return bmap.pagesneeded - bmap.pagesreserved


def _add_bounce_page(tag, bmap, vaddr: int, size: int) -> int:
    """Give the chunk at ``vaddr`` a reserved bounce page; its bus address."""
    if bmap.pagesneeded == 0:
        raise KernelPanic("add_bounce_page: map doesn't need any pages")
    bmap.pagesneeded -= 1
    if bmap.pagesreserved == 0:
        raise KernelPanic("add_bounce_page: map doesn't need any pages")
    bmap.pagesreserved -= 1
    pool = tag.pool
    if not pool.pages:
        raise KernelPanic("add_bounce_page: free page list is empty")
    bp = pool.pages.pop(0)
    pool.reserved_bpages -= 1
    pool.active_bpages += 1
    bp.datavaddr, bp.datacount = vaddr, size
    bmap.bpages.append(bp)
    return bp.busaddr


def _free_bounce_page(kernel, tag, bp: BouncePage) -> None:
    """Back to the pool head; then only the first waiting map is re-tried."""
    bp.datavaddr = bp.datacount = 0
    pool = tag.pool
    pool.pages.insert(0, bp)
    pool.free_bpages += 1
    pool.active_bpages -= 1
    if pool.waiting:
        m = pool.waiting[0]
        if _reserve_bounce_pages(m.dmat, m) == 0:
            pool.waiting.pop(0)
            st = kernel_state(kernel, BusDma)
            st.callbacklist.append(m)
            st.swi_pending = True
