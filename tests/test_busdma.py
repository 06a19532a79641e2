"""bus_dma: segments from the pmap, bounce pages both ways, EFBIG, deferred loads, boundaries."""

import random
from errno import EBUSY, EFBIG, EINPROGRESS, EINVAL

import pytest

import kalloc
from kalloc.dma import (BUS_DMA_ALLOCNOW, BUS_DMA_NOWAIT, BUS_DMASYNC_POSTREAD, BUS_DMASYNC_POSTWRITE,
                        BUS_DMASYNC_PREREAD, BUS_DMASYNC_PREWRITE, BUS_SPACE_MAXADDR,
                        BUS_SPACE_MAXADDR_24BIT, bus_dma_tag_create, bus_dma_tag_destroy,
                        bus_dmamap_create, bus_dmamap_destroy, bus_dmamap_load, bus_dmamap_load_mbuf,
                        bus_dmamap_sync, bus_dmamap_unload, bus_dmamem_alloc, bus_dmamem_free, dma_stats,
                        map_frames, phys_read, phys_write)
from kalloc.dma.busdma import BusDma, BusDmaSegment
from kalloc.dma import kernel_state
from kalloc.errors import KernelPanic, PageFault

PS = 4096
DATA = random.Random(5).randbytes(3 * PS)


def kernel(physmem="64M"):
    k = kalloc.boot("bump", physmem=physmem)
    k.machine.page_take(0)                      # the BIOS page, as on a real i386
    return k



class Callback:
    def __init__(self):
        self.calls = []

    def __call__(self, arg, segs, nseg, *rest):
        self.calls.append((arg, segs, nseg, *rest))


def tag(k, lowaddr=BUS_SPACE_MAXADDR, *, boundary=0, maxsize=0x10000, nsegments=16, maxsegsz=0x10000,
        flags=0, parent=None):
    err, t = bus_dma_tag_create(k, parent, 1, boundary, lowaddr, BUS_SPACE_MAXADDR, maxsize, nsegments,
                                maxsegsz, flags)
    assert err == 0
    return t


def test_segments_follow_the_pmap():
    k = kernel()
    buf = map_frames(k, [0x300, 0x301, 0x7c2])              # VA-contiguous, two physical pieces
    t = tag(k)
    err, m = bus_dmamap_create(k, t, 0)
    assert (err, m) == (0, None)                            # nothing to bounce: the NULL map
    cb = Callback()
    assert bus_dmamap_load(k, t, m, buf + 100, 3 * PS - 100, cb, "arg", 0) == 0
    assert cb.calls == [("arg", [BusDmaSegment(0x300064, 2 * PS - 100), BusDmaSegment(0x7c2000, PS)], 2, 0)]


def test_too_many_segments_is_efbig():
    k = kernel()
    buf = map_frames(k, [0x300, 0x500, 0x700])
    t = tag(k, nsegments=2)
    cb = Callback()
    assert bus_dmamap_load(k, t, None, buf, 3 * PS, cb, None, 0) == 0
    (_, segs, nseg, error), = cb.calls
    assert (nseg, error, len(segs)) == (3, EFBIG, 2)
    assert dma_stats(k)["busdma"]["failures"] == 1
    assert kernel_state(k, BusDma).messages == ["bus_dmamap_load: Too many segs! buf_len = 0x1000"]


def isa_tag(k, pages):
    return tag(k, BUS_SPACE_MAXADDR_24BIT, maxsize=pages * PS, flags=BUS_DMA_ALLOCNOW)


def test_bounce_write_and_read_move_the_bytes():
    k = kernel()
    t = isa_tag(k, 4)
    err, m = bus_dmamap_create(k, t, 0)
    assert err == 0 and m is not None
    buf = map_frames(k, [0x3000, 0x3001, 0x2000])           # above 16 MiB
    k.write(buf, DATA)
    cb = Callback()
    assert bus_dmamap_load(k, t, m, buf, 3 * PS, cb, None, 0) == 0
    (_, segs, nseg, error), = cb.calls
    assert error == 0 and all(s.ds_addr + s.ds_len <= 0x1000000 for s in segs)
    assert sum(s.ds_len for s in segs) == 3 * PS
    assert dma_stats(k)["busdma"]["bounce_pages_in_use"] == 3
    bus_dmamap_sync(k, t, m, BUS_DMASYNC_PREWRITE)             # memory -> device
    seen = b"".join(phys_read(k, s.ds_addr, s.ds_len) for s in segs)
    assert seen == DATA                                        # what the device reads
    bus_dmamap_sync(k, t, m, BUS_DMASYNC_POSTWRITE)
    bus_dmamap_sync(k, t, m, BUS_DMASYNC_PREREAD)              # device -> memory
    incoming = bytes(reversed(DATA))
    pos = 0
    for s in segs:
        phys_write(k, s.ds_addr, incoming[pos:pos + s.ds_len])
        pos += s.ds_len
    assert k.read(buf, 3 * PS) == DATA                         # not yet copied back
    bus_dmamap_sync(k, t, m, BUS_DMASYNC_POSTREAD)
    assert k.read(buf, 3 * PS) == incoming
    assert dma_stats(k)["busdma"]["bounced_bytes"] == 6 * PS
    bus_dmamap_unload(k, t, m)
    assert dma_stats(k)["busdma"]["bounce_pages_in_use"] == 0


def test_only_unreachable_pages_bounce():
    k = kernel()
    t = isa_tag(k, 2)
    err, m = bus_dmamap_create(k, t, 0)
    low = map_frames(k, [0x400])
    cb = Callback()
    bus_dmamap_load(k, t, m, low, PS, cb, None, 0)
    assert cb.calls[0][1] == [BusDmaSegment(0x400000, PS)] and not m.bpages


def test_deferred_load_runs_its_callback_after_unload():
    k = kernel()
    t = isa_tag(k, 2)                                          # ALLOCNOW: 2 bounce pages
    (_, a), (_, b) = bus_dmamap_create(k, t, 0), bus_dmamap_create(k, t, 0)
    assert t.pool.total_bpages == 4                            # the second map added 2 more
    buf_a, buf_b = map_frames(k, [0x3000, 0x3001, 0x3002, 0x3003]), map_frames(k, [0x3004])
    cb_a, cb_b = Callback(), Callback()
    assert bus_dmamap_load(k, t, a, buf_a, 4 * PS, cb_a, "a", BUS_DMA_NOWAIT) == 0
    assert bus_dmamap_load(k, t, b, buf_b, PS, cb_b, "b", BUS_DMA_NOWAIT) == EINPROGRESS
    assert cb_b.calls == [] and dma_stats(k)["busdma"]["deferred_loads"] == 1
    assert dma_stats(k)["busdma"]["maps_waiting"] == 1
    assert bus_dmamap_destroy(k, t, a) == EBUSY                # holds bounce pages
    bus_dmamap_unload(k, t, a)                                 # busdma_swi runs b's load
    (arg, segs, nseg, error), = cb_b.calls
    assert (arg, nseg, error) == ("b", 1, 0) and segs[0].ds_addr < 0x1000000
    assert dma_stats(k)["busdma"]["maps_waiting"] == 0
    k.write(buf_b, b"late")
    bus_dmamap_sync(k, t, b, BUS_DMASYNC_PREWRITE)
    assert phys_read(k, segs[0].ds_addr, 4) == b"late"


def test_a_waiting_map_cannot_be_loaded_again_or_destroyed():
    """4.8 would link it twice on the waiting list (a loop busdma_swi never leaves) or free it
    while linked; kalloc panics with the reason.  Unloading it is harmless, as in 4.8."""
    k = kernel()
    t = isa_tag(k, 1)                                          # ALLOCNOW: 1 bounce page
    (_, a), (_, b) = bus_dmamap_create(k, t, 0), bus_dmamap_create(k, t, 0)
    assert t.pool.total_bpages == 2
    buf_a, buf_b = map_frames(k, [0x3000, 0x3001]), map_frames(k, [0x3004])
    cb = Callback()
    assert bus_dmamap_load(k, t, a, buf_a, 2 * PS, cb, "a", 0) == 0
    assert bus_dmamap_load(k, t, b, buf_b, PS, cb, "b", 0) == EINPROGRESS
    with pytest.raises(KernelPanic, match="bus_dmamap_load: map 0x[0-9a-f]+ still waits for bounce pages"
                                          ".* a loop that busdma_swi never leaves"):
        bus_dmamap_load(k, t, b, buf_b, PS, cb, "b", 0)
    with pytest.raises(KernelPanic, match="bus_dmamap_destroy: .* still waits .* freed memory"):
        bus_dmamap_destroy(k, t, b)
    bus_dmamap_unload(k, t, b)                                 # no pages yet: nothing happens
    assert dma_stats(k)["busdma"]["maps_waiting"] == 1 and [c[0] for c in cb.calls] == ["a"]
    bus_dmamap_unload(k, t, a)                                 # now b's deferred load runs
    assert [c[0] for c in cb.calls] == ["a", "b"] and dma_stats(k)["busdma"]["maps_waiting"] == 0
    bus_dmamap_unload(k, t, b)
    assert bus_dmamap_load(k, t, b, buf_b, PS, cb, "b2", 0) == 0 and cb.calls[-1][0] == "b2"   # served again


def test_load_mbuf_splits_at_the_boundary_and_maxsegsz():
    k = kernel()
    chain = [(map_frames(k, [0x2e, 0x2f, 0x30, 0x31]), 4 * PS), (map_frames(k, [0x32]), PS)]
    cb = Callback()
    t = tag(k, boundary=0x10000)
    assert bus_dmamap_load_mbuf(k, t, None, chain, cb, None, 0) == 0
    assert cb.calls[-1][1:] == ([BusDmaSegment(0x2e000, 0x2000), BusDmaSegment(0x30000, 0x3000)], 2, 5 * PS, 0)
    t = tag(k, maxsegsz=0x3000)
    bus_dmamap_load_mbuf(k, t, None, chain, cb, None, 0)
    assert cb.calls[-1][1] == [BusDmaSegment(0x2e000, 0x3000), BusDmaSegment(0x31000, 0x2000)]
    assert bus_dmamap_load_mbuf(k, tag(k, maxsize=PS), None, chain, cb, None, 0) == EINVAL
    assert bus_dmamap_load_mbuf(k, tag(k, boundary=0x10000, nsegments=1), None, chain, cb, None, 0) == EFBIG
    assert cb.calls[-1][1:] == ([], 0, 0, EFBIG)
    with pytest.raises(KernelPanic, match="No support for bounce pages!"):
        bus_dmamap_load_mbuf(k, isa_tag(k, 1), None, chain, cb, None, 0)


def test_bus_dmamap_load_ignores_the_boundary_as_4_8_does():
    k = kernel()
    buf = map_frames(k, [0x4e, 0x4f, 0x50, 0x51])
    cb = Callback()
    bus_dmamap_load(k, tag(k, boundary=0x10000), None, buf, 4 * PS, cb, None, 0)
    assert cb.calls[0][1] == [BusDmaSegment(0x4e000, 4 * PS)]


def test_pool_pages_lie_below_each_tags_lowaddr():
    k = kernel()
    t8 = tag(k, 0x7fffff, maxsize=2 * PS, flags=BUS_DMA_ALLOCNOW)
    t16 = isa_tag(k, 2)
    assert all(p.busaddr < 0x800000 for p in t8.pool.pages)
    assert t8.pool.pages is not t16.pool.pages and t16.pool.total_bpages == 2


def test_map_create_count_as_error_quirk():
    k = kernel()
    t = tag(k, BUS_SPACE_MAXADDR_24BIT, maxsize=3 * PS)      # no ALLOCNOW
    err, m = bus_dmamap_create(k, t, 0)
    assert err == 3 and m is not None and t.map_count == 0  # the page count, as the error
    assert bus_dmamap_create(k, t, 0)[0] == 3                 # and again: never marked done


def test_dmamem_alloc_and_free():
    k = kernel()
    t = tag(k, BUS_SPACE_MAXADDR_24BIT, boundary=0x10000, maxsize=0x10000)
    err, va, m = bus_dmamem_alloc(k, t, BUS_DMA_NOWAIT)
    phys = k.vtophys(va)
    assert err == 0 and m is None and phys % 0x10000 == 0 and phys + 0x10000 <= 0x1000000
    bus_dmamem_free(k, t, va, None)
    small = tag(k, maxsize=PS)
    err, va, _ = bus_dmamem_alloc(k, small, 0)
    assert k.malloc_type("devbuf").inuse >= 1                # one page a device reaches anywhere: malloc
    bus_dmamem_free(k, small, va, None)
    with pytest.raises(KernelPanic, match="^bus_dmamem_free: Invalid map freed$"):
        bus_dmamem_free(k, small, va, object())


def test_destroy_rules_and_bad_input():
    k = kernel()
    t = isa_tag(k, 1)
    _, m = bus_dmamap_create(k, t, 0)
    assert bus_dma_tag_destroy(k, t) == EBUSY
    assert bus_dmamap_destroy(k, t, m) == 0
    assert bus_dma_tag_destroy(k, t) == 0
    for kw in ({"alignment": 3}, {"boundary": 0x18000}):
        args = {"alignment": 1, "boundary": 0, **kw}
        with pytest.raises(ValueError, match="must be powers of 2"):
            bus_dma_tag_create(k, None, args["alignment"], args["boundary"], 0xffffff, BUS_SPACE_MAXADDR,
                               PS, 1, PS, 0)
    with pytest.raises(ValueError, match="nsegments must be at least 1"):
        bus_dma_tag_create(k, None, 1, 0, 0xffffff, BUS_SPACE_MAXADDR, PS, 0, PS, 0)
    with pytest.raises(PageFault):
        bus_dmamap_load(k, tag(k), None, 0xdead0000, PS, Callback(), None, 0)
    with pytest.raises(ValueError, match="unknown op"):
        bus_dmamap_sync(k, t, None, 7)
    # Junk where a tag, a map or a callback goes: a TypeError that names it, not an
    # AttributeError from deep inside.
    with pytest.raises(TypeError, match="bus_dma_tag_create: parent must be a BusDmaTag or None, not str"):
        bus_dma_tag_create(k, "junk", 1, 0, 0xffffff, BUS_SPACE_MAXADDR, PS, 1, PS, 0)
    with pytest.raises(TypeError, match="bus_dmamap_create: tag must be a BusDmaTag, not NoneType"):
        bus_dmamap_create(k, None, 0)
    with pytest.raises(TypeError, match="bus_dmamap_load: bmap must be a BusDmaMap or None, not int"):
        bus_dmamap_load(k, tag(k), 5, 0xdead0000, PS, Callback(), None, 0)
    with pytest.raises(TypeError, match="bus_dmamap_load: callback must be callable, not NoneType"):
        bus_dmamap_load(k, tag(k), None, 0xdead0000, PS, None, None, 0)
    with pytest.raises(TypeError, match="bus_dma_tag_destroy: tag must be a BusDmaTag"):
        bus_dma_tag_destroy(k, "junk")


def test_child_tag_inherits_restrictions():
    k = kernel()
    parent = tag(k, BUS_SPACE_MAXADDR_24BIT, boundary=0x10000)
    child = tag(k, BUS_SPACE_MAXADDR, parent=parent)
    assert (child.lowaddr, child.boundary, child.parent) == (0xffffff, 0x10000, None)
