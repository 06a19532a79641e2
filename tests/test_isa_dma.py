"""ISA DMA: bounce decisions, data through the bounce buffer both ways, the 8237 registers."""

import random

import pytest

import kalloc
from kalloc.dma import (ISADMA_RAW, ISADMA_READ, ISADMA_WRITE, contigmalloc, device_transfer, isa_dma,
                        isa_dma_acquire, isa_dma_release, isa_dmadone, isa_dmainit, isa_dmarangecheck,
                        isa_dmastart, isa_dmastatus, isa_dmastop, map_frames, phys_read)
from kalloc.dma.isa import DMA37MD_READ, DMA37MD_SINGLE, DMA37MD_WRITE
from kalloc.errors import KernelPanic

PS = 4096
DATA = random.Random(7).randbytes(4 * PS + 500)


def kernel(physmem="64M"):
    """A kernel whose physical page 0 is not RAM, as on a real i386 (the BIOS keeps it;
    isa_dmarangecheck takes physical address 0 for "not mapped")."""
    k = kalloc.boot("bump", physmem=physmem)
    k.machine.page_take(0)
    return k



def attached(k, chan, size=65536):
    assert isa_dma_acquire(k, chan) == 0
    assert isa_dmainit(k, chan, size) == 0
    return isa_dma(k).bouncebuf[chan]


def test_high_buffer_write_goes_through_the_bounce_buffer():
    k = kernel()
    bounce = attached(k, 1)
    buf = k.malloc(len(DATA), k.malloc_type("devbuf"))
    assert k.vtophys(buf) >= 0x1000000              # bump takes the highest pages
    k.write(buf, DATA)
    copied = k.vm.bytes_copied
    isa_dmastart(k, ISADMA_WRITE, buf, len(DATA), 1)
    assert k.vm.bytes_copied - copied == len(DATA)
    bphys = k.vtophys(bounce)
    assert phys_read(k, bphys, len(DATA)) == DATA    # in physical memory below 16 MiB
    ch = isa_dma(k).channels[1]
    assert (ch.mode, ch.page, ch.base_addr, ch.base_count) == (
        DMA37MD_SINGLE | DMA37MD_READ | 1, bphys >> 16, bphys & 0xffff, len(DATA) - 1)
    assert isa_dmastatus(k, 1) == len(DATA)
    assert device_transfer(k, 1, nbytes=len(DATA)) == DATA   # what the device receives
    assert isa_dmastatus(k, 1) == 0 and ch.masked             # terminal count
    isa_dmadone(k, ISADMA_WRITE, buf, len(DATA), 1)
    assert isa_dma(k).busy == 0 and isa_dma(k).bounced_starts == 1


def test_high_buffer_read_is_copied_back_by_dmadone():
    k = kernel()
    bounce = attached(k, 5)
    buf = k.malloc(len(DATA), k.malloc_type("devbuf"))
    isa_dmastart(k, ISADMA_READ, buf, len(DATA), 5)
    ch = isa_dma(k).channels[5]
    bphys = k.vtophys(bounce)
    assert (ch.mode, ch.page, ch.base_addr, ch.base_count) == (
        DMA37MD_SINGLE | DMA37MD_WRITE | 1, bphys >> 16, (bphys >> 1) & 0xffff, len(DATA) // 2 - 1)
    device_transfer(k, 5, data=DATA[:1000])
    assert isa_dmastatus(k, 5) == len(DATA) - 1000           # word channel: bytes = 2 x count
    device_transfer(k, 5, data=DATA[1000:])
    assert phys_read(k, bphys, len(DATA)) == DATA
    assert k.read(buf, len(DATA)) == bytes(len(DATA))        # not yet copied back
    isa_dmadone(k, ISADMA_READ, buf, len(DATA), 5)
    assert k.read(buf, len(DATA)) == DATA


def test_low_contiguous_buffer_is_used_directly():
    k = kernel()
    attached(k, 1)
    buf = contigmalloc(k, 2 * PS, None, 0, 0x20000, 0xffffff, 1, 0x10000)
    assert isa_dmarangecheck(k, buf, 2 * PS, 1) == 0
    isa_dmastart(k, ISADMA_READ, buf, 2 * PS, 1)
    assert isa_dma(k).channels[1].page == k.vtophys(buf) >> 16
    device_transfer(k, 1, data=DATA[:2 * PS])
    assert k.read(buf, 2 * PS) == DATA[:2 * PS]              # the device wrote it in place
    isa_dmadone(k, ISADMA_READ, buf, 2 * PS, 1)
    assert isa_dma(k).bounced_starts == 0


def test_rangecheck_reasons():
    k = kernel()
    cross64 = map_frames(k, [0x2e, 0x2f, 0x30, 0x31])       # 0x2e000-0x32000: crosses 192 KiB
    assert isa_dmarangecheck(k, cross64, 4 * PS, 1) == 1
    assert isa_dmarangecheck(k, cross64, 4 * PS, 5) == 0     # inside one 128 KiB window
    assert isa_dmarangecheck(k, cross64, 2 * PS, 1) == 0     # the first two pages alone are fine
    scattered = map_frames(k, [0x100, 0x200])
    assert isa_dmarangecheck(k, scattered, 2 * PS, 1) == 1   # not physically contiguous
    assert isa_dmarangecheck(k, scattered + 100, PS - 100, 1) == 0
    assert isa_dmarangecheck(k, scattered + 100, PS - 99, 1) == 1   # touches the second page


def test_boundary_crossing_transfer_bounces_and_the_8237_would_wrap():
    k = kernel()
    bounce = attached(k, 1)
    cross64 = map_frames(k, [0x2e, 0x2f, 0x30, 0x31])
    isa_dmastart(k, ISADMA_READ, cross64, 4 * PS, 1)
    assert isa_dma(k).bounced & 2 and k.vtophys(isa_dma(k).bouncebuf[1]) == k.vtophys(bounce)
    device_transfer(k, 1, data=DATA[:4 * PS])
    isa_dmadone(k, ISADMA_READ, cross64, 4 * PS, 1)
    assert k.read(cross64, 4 * PS) == DATA[:4 * PS]
    # Why it must bounce: program the chip with the crossing buffer itself.  The address
    # register wraps at 64 KiB and the page register does not count: the second half
    # lands at the start of the window (0x20000), not at 0x30000.
    k.vm.zero(cross64, 4 * PS)
    ch = isa_dma(k).channels[1]
    ch.page, ch.base_addr, ch.base_count, ch.mode, ch.masked = 2, 0xe000, 4 * PS - 1, DMA37MD_WRITE, False
    ch.addr, ch.left = ch.base_addr, 4 * PS
    device_transfer(k, 1, data=DATA[:4 * PS])
    assert phys_read(k, 0x20000, 2 * PS) == DATA[2 * PS:4 * PS]
    assert k.read(cross64 + 2 * PS, 2 * PS) == bytes(2 * PS)      # never reached


def test_auto_init_mode_reloads_at_terminal_count():
    k = kernel()
    bounce = attached(k, 1)
    isa_dmastart(k, ISADMA_READ | ISADMA_RAW, bounce, PS, 1)
    device_transfer(k, 1, data=DATA[:PS])
    assert isa_dmastatus(k, 1) == PS and not isa_dma(k).channels[1].masked   # reloaded
    device_transfer(k, 1, data=DATA[PS:2 * PS])
    assert k.read(bounce, PS) == DATA[PS:2 * PS]                          # a ring buffer
    assert isa_dmastop(k, 1) == PS and isa_dma(k).channels[1].masked


def test_malloc_first_when_malloc_memory_qualifies():
    k = kernel("16M")                                      # every page is below 16 MiB
    attached(k, 2, 1024)
    assert isa_dma(k).via[2] == "malloc"
    k2 = kernel()
    attached(k2, 2, 1024)
    assert isa_dma(k2).via[2] == "contigmalloc"           # malloc gave high memory: freed
    assert k2.malloc_type("devbuf").inuse == 0


def fill_below_16m(k):
    for pfn in range(0x1000):
        if not k.machine.page_state[pfn]:
            k.machine.page_take(pfn)


def test_dmainit_failure_is_logged_and_panics_only_when_a_bounce_is_needed():
    k = kernel()
    fill_below_16m(k)
    assert isa_dma_acquire(k, 5) == 0
    assert isa_dmainit(k, 5, 65536) == 12                  # ENOMEM
    assert isa_dma(k).messages == ["isa_dmainit(5, 65536) failed"]
    buf = k.malloc(PS, k.malloc_type("devbuf"))
    with pytest.raises(KernelPanic, match="^isa_dmastart: bad bounce buffer$"):
        isa_dmastart(k, ISADMA_WRITE, buf, PS, 5)


def test_bounce_buffer_too_small_panics():
    k = kernel()
    attached(k, 1, PS)
    buf = k.malloc(2 * PS, k.malloc_type("devbuf"))
    with pytest.raises(KernelPanic, match="^isa_dmastart: bad bounce buffer$"):
        isa_dmastart(k, ISADMA_WRITE, buf, 2 * PS, 1)


@pytest.mark.parametrize("call,message", [
    (lambda k: isa_dmainit(k, 8, PS), "isa_dmainit: channel out of range"),
    (lambda k: isa_dmainit(k, -1, PS), "isa_dmainit: channel out of range"),
    (lambda k: isa_dmastart(k, 0, 0xc0000000, PS, 9), "isa_dmastart: channel out of range"),
    (lambda k: isa_dmastart(k, 0, 0xc0000000, 65537, 1), "isa_dmastart: impossible request"),
    (lambda k: isa_dmastart(k, 0, 0xc0000001, 2, 5), "isa_dmastart: impossible request"),
    (lambda k: isa_dmastart(k, 0, 0xc0000000, 131074, 6), "isa_dmastart: impossible request"),
    (lambda k: isa_dmastart(k, 0, 0xdead0000, PS, 1), "isa_dmacheck: no physical page present"),
])
def test_4_8_panics(call, message):
    with pytest.raises(KernelPanic, match=f"^{message}$"):
        call(kernel())


def test_second_dmainit_and_bad_values():
    k = kernel()
    attached(k, 3, PS)
    with pytest.raises(KernelPanic, match="^isa_dmainit: impossible request$"):
        isa_dmainit(k, 3, PS)
    with pytest.raises(TypeError, match="channel must be an int"):
        isa_dmainit(k, "2", PS)
    with pytest.raises(ValueError, match="nbytes must be positive"):
        isa_dmastart(k, 0, isa_dma(k).bouncebuf[3], 0, 3)
    with pytest.raises(ValueError, match="channel 1 is masked"):
        device_transfer(k, 1, nbytes=16)


def test_acquire_release_and_status_messages():
    k = kernel()
    assert isa_dma_acquire(k, 6) == 0
    assert isa_dma_acquire(k, 6) == 16                     # EBUSY
    assert isa_dmastatus(k, 6) == -2
    isa_dma_release(k, 6)
    isa_dma_release(k, 6)
    assert isa_dmastatus(k, 6) == -1
    assert isa_dma(k).messages == ["isa_dma_acquire: channel 6 already in use", "chan 6 not busy",
                                   "isa_dma_release: channel 6 not in use", "isa_dmastatus: channel 6 not active"]
