"""ISA DMA: the 8237 pair and per-channel bounce buffers, FreeBSD 4.8 isa_dma.c.

Deterministic: bytes move only when a caller (driver or simulated device) moves them.

docs/research/kmem_map.md sections 4.1-4.4 are the source.  An ISA device masters the bus
through one of the 8237 channels and puts out 24 address bits: 16 from the channel's
address register, 8 from its page register.  The address register counts, the page
register does not, so a transfer must stay inside one 64 KiB window (channels 0-3,
bytes) or 128 KiB window (channels 5-7, words; 4 is the cascade) and below 16 MiB::

    physical memory                                                  16 MiB
    |  64K  |  64K  |  64K  |  64K  |  ...                    |  64K  |..........
    [-------)        [----------)          channel 1: ok
                  [-------+-------)        crosses a window: the address register
                          ^ wraps to the window start, the data lands here -- bounce

A driver hands isa_dmastart a kernel virtual address.  If the buffer is above 16 MiB,
physically discontiguous or crosses its window (isa_dmarangecheck), the transfer goes
through the channel's bounce buffer, made once by isa_dmainit::

    client buffer (kernel VA, pages anywhere)      bounce buffer (contiguous, < 16 MiB,
    va ... +4K ... +8K ... +12K                     inside one window)
    [ pfn 9001 ][ pfn 17 ][ pfn 4410 ]   --bcopy-->  [ pfn 301 | 302 | 303 ]
          write: isa_dmastart copies in   |              ^ the 8237 is programmed with
          read:  isa_dmadone copies back  <--bcopy--      page 0x01, address 0x2d00

Data really moves: ``device_transfer`` is the device side, writing (ISADMA_READ) or
reading (ISADMA_WRITE) physical memory at the address and count the 8237 was
programmed with, wrapping the address register at 16 bits as the chip does.  Bounce
copies go through ``vm.copy`` and count in ``vm.bytes_copied``.

isa_dmainit tries malloc(size, M_DEVBUF, M_NOWAIT) first and keeps the block if it
passes isa_dmarangecheck; otherwise it frees it and calls contigmalloc(size, 0,
0xffffff, alignment 1, boundary 64K or 128K).  Both go through the booted backend and
the page allocator, so *where the allocator put its pages* decides whether a late
driver gets a buffer: the 2003 regression (kalloc.dma.scenario).  On failure 4.8
prints "isa_dmainit(%d, %d) failed" and carries on; the panic comes later, in
isa_dmastart, and only if a transfer needs bouncing.  kalloc has no console: printf
text goes to ``isa_dma(k).messages`` and isa_dmainit returns 0 or ENOMEM.

Deviations: 4.8 runs the checks marked DIAGNOSTIC (channel range, impossible request,
not acquired) only in DIAGNOSTIC kernels; kalloc always does, with 4.8's messages, and
checks the channel in every entry point.  A transfer of 0 bytes is a ValueError (4.8
would program a count of 0xffff: 64 K transfers).  The rollover-safe double read of the
count in isa_dmastatus is one read: the simulated device never runs concurrently.

Physical page 0 panics in isa_dmarangecheck, as in 4.8, which reads physical address 0 as
"no mapping"; a real i386 never hands page 0 out (the BIOS data area), and
kalloc.dma.scenario wires it.

XXX: the channel-4 cascade is accepted as 4.8 accepts it (VALID_DMA_MASK is 7); demand
and block modes are not modelled, and the bounced bit that isa_dma_release leaves set
(kept) is exercised by no workload.
"""

from __future__ import annotations

from errno import EBUSY, ENOMEM

from attrs import define, field

from kalloc.dma import existing_state, kernel_state
from kalloc.dma.contig import ISA_LIMIT, check_uint, contigmalloc, phys_read, phys_write
from kalloc.errors import KernelPanic, PageFault
from kalloc.flags import M_NOWAIT

# isa_dma.h flags
ISADMA_READ = 0x00100000    # device -> memory (the 8237's WRITE transfer)
ISADMA_WRITE = 0            # memory -> device (the 8237's READ transfer)
ISADMA_RAW = 0x00080000     # auto-initialise mode

# ic/i8237.h mode register bits
DMA37MD_SINGLE = 0x40
DMA37MD_AUTO = 0x50
DMA37MD_WRITE = 0x04
DMA37MD_READ = 0x08

VALID_DMA_MASK = 7


@define(slots=True)
class Channel8237:
    """One channel's registers as isa_dmastart programs them (plain numbers).

    ``base_addr``/``base_count`` are what was written; ``addr``/``count`` the current
    registers, advanced by ``device_transfer``; ``count`` reads 0xffff after terminal
    count.  Addresses are in bytes on channels 0-3 and in 16-bit words on 5-7."""

    mode: int = 0
    page: int = 0
    base_addr: int = 0
    base_count: int = 0
    addr: int = 0
    count: int = 0
    left: int = 0           # transfers left before terminal count
    masked: bool = True

    def phys(self, chan: int) -> int:
        """The physical address the next transfer goes to."""
        if chan & 4:
            return ((self.page & 0xfe) << 16) | (self.addr << 1)
        return (self.page << 16) | self.addr


@define(slots=True)
class IsaDma:
    """The isa_dma.c globals of one kernel, plus counters and the printf log."""

    inuse: int = 0
    busy: int = 0
    bounced: int = 0
    auto_mode: int = 0
    bouncebuf: list = field(factory=lambda: [None] * 8)
    bouncebufsize: list = field(factory=lambda: [0] * 8)
    via: list = field(factory=lambda: [None] * 8)   # "malloc" or "contigmalloc"
    channels: list = field(factory=lambda: [Channel8237() for _ in range(8)])
    messages: list = field(factory=list)
    init_failed: int = 0
    starts: int = 0
    bounced_starts: int = 0
    bounced_bytes: int = 0
    device_bytes: int = 0

    def stats(self) -> dict:
        return {
            "bounce_buffers": {str(c): {"va": self.bouncebuf[c], "size": self.bouncebufsize[c],
                                        "via": self.via[c]}
                               for c in range(8) if self.bouncebuf[c] is not None},
            "init_failed": self.init_failed, "starts": self.starts,
            "bounced_starts": self.bounced_starts, "bounced_bytes": self.bounced_bytes,
            "device_bytes": self.device_bytes, "messages": list(self.messages),
        }


def isa_dma(kernel) -> IsaDma:
    """This kernel's ISA DMA state (made on first use)."""
    return kernel_state(kernel, IsaDma)


def _chan(chan, who: str) -> int:
    if isinstance(chan, bool) or not isinstance(chan, int):
        raise TypeError(f"{who}: channel must be an int, not {type(chan).__name__}")
    if chan & ~VALID_DMA_MASK:
        raise KernelPanic(f"{who}: channel out of range")
    return chan


def _state(kernel, chan, who: str, word: str = "acquired"):
    """Check the channel, then log 4.8's "<who>: channel N not <word>" if it is not in
    use: (state, bit, in_use)."""
    bit = 1 << _chan(chan, who)
    st = isa_dma(kernel)
    inuse = bool(st.inuse & bit)
    if not inuse:
        st.messages.append(f"{who}: channel {chan} not {word}")
    return st, bit, inuse


def _idle(st: IsaDma, bit: int, chan: int) -> bool:
    """Neither busy nor in auto-init mode (logged as 4.8 prints it)."""
    if (st.busy | st.auto_mode) & bit:
        return False
    st.messages.append(f"chan {chan} not busy")
    return True


# --- setup ---------------------------------------------------------------------------------
def isa_dmainit(kernel, chan, bouncebufsize, cpu: int = 0) -> int:
    """Make channel ``chan``'s bounce buffer: malloc first, contigmalloc below 16 MiB
    second.  0, or ENOMEM after logging "isa_dmainit(%d, %d) failed".  (MAY SLEEP in
    4.8's contigmalloc launderer; the mallocs are M_NOWAIT.)"""
    _chan(chan, "isa_dmainit")
    st = isa_dma(kernel)
    if st.bouncebuf[chan] is not None:
        raise KernelPanic("isa_dmainit: impossible request")
    size = check_uint("isa_dmainit", "bouncebufsize", bouncebufsize)
    st.bouncebufsize[chan] = size
    devbuf = kernel.malloc_type("devbuf", "device driver memory")
    buf = kernel.malloc(size, devbuf, M_NOWAIT, cpu)
    if buf is not None:
        if not isa_dmarangecheck(kernel, buf, size, chan):
            st.bouncebuf[chan], st.via[chan] = buf, "malloc"
            return 0
        kernel.free(buf, devbuf, cpu)
    buf = contigmalloc(kernel, size, devbuf, M_NOWAIT, 0, 0xffffff, 1,
                       0x20000 if chan & 4 else 0x10000)
    if buf is None:
        st.messages.append(f"isa_dmainit({chan}, {size}) failed")
        st.init_failed += 1
        return ENOMEM
    st.bouncebuf[chan], st.via[chan] = buf, "contigmalloc"
    return 0


def isa_dma_acquire(kernel, chan) -> int:
    """Claim a channel: 0, or EBUSY if it is already in use."""
    bit = 1 << _chan(chan, "isa_dma_acquire")
    st = isa_dma(kernel)
    if st.inuse & bit:
        st.messages.append(f"isa_dma_acquire: channel {chan} already in use")
        return EBUSY
    st.inuse |= bit
    st.auto_mode &= ~bit
    return 0


def isa_dma_release(kernel, chan) -> None:
    """Give a channel back.  Leaves the bounced bit set, as 4.8 does ("XXX")."""
    st, bit, _ = _state(kernel, chan, "isa_dma_release", "in use")
    st.busy &= ~bit
    st.inuse &= ~bit
    st.auto_mode &= ~bit


# --- a transfer ----------------------------------------------------------------------------
def isa_dmarangecheck(kernel, va, length, chan) -> int:
    """1 if [va, va + length) must bounce: a page at or above 16 MiB, a page not
    physically after the one before, or a step across the channel's 64/128 KiB window."""
    _chan(chan, "isa_dmarangecheck")
    va = check_uint("isa_dmarangecheck", "va", va)
    length = check_uint("isa_dmarangecheck", "length", length)
    arch = kernel.machine.arch
    ps, mask = arch.page_size, arch.page_mask
    pgmsk = ~((128 if chan & 4 else 64) * 1024 - 1)
    endva = (va + length + mask) & ~mask
    prior = 0
    while va < endva:
        try:
            phys = kernel.vtophys(va) & ~mask
        except PageFault:
            phys = 0                             # pmap_extract's answer for no mapping
        if phys == 0:
            raise KernelPanic("isa_dmacheck: no physical page present")
        if phys >= ISA_LIMIT:
            return 1
        if prior and (prior + ps != phys or (prior ^ phys) & pgmsk):
            return 1
        prior = phys
        va += ps
    return 0


def isa_dmastart(kernel, flags, addr, nbytes, chan) -> None:
    """Start a transfer of ``nbytes`` at kernel VA ``addr``: bounce if it must (copying
    the data in for a write), then program the channel and unmask it."""
    _chan(chan, "isa_dmastart")
    addr = check_uint("isa_dmastart", "addr", addr)
    nbytes = check_uint("isa_dmastart", "nbytes", nbytes)
    if nbytes == 0:
        raise ValueError("isa_dmastart: nbytes must be positive (4.8 would program a count of 0xffff)")
    if (chan < 4 and nbytes > 1 << 16) or (chan >= 4 and (nbytes > 1 << 17 or addr & 1)):
        raise KernelPanic("isa_dmastart: impossible request")
    st, bit, _ = _state(kernel, chan, "isa_dmastart")
    st.busy |= bit
    st.starts += 1
    if isa_dmarangecheck(kernel, addr, nbytes, chan):
        buf = st.bouncebuf[chan]
        if buf is None or st.bouncebufsize[chan] < nbytes:
            raise KernelPanic("isa_dmastart: bad bounce buffer")
        st.bounced |= bit
        st.bounced_starts += 1
        if not flags & ISADMA_READ:
            kernel.vm.copy(buf, addr, nbytes)
            st.bounced_bytes += nbytes
        addr = buf
    phys = kernel.vtophys(addr)
    if flags & ISADMA_RAW:
        st.auto_mode |= bit
    else:
        st.auto_mode &= ~bit
    ch = st.channels[chan]
    ch.mode = ((DMA37MD_AUTO if flags & ISADMA_RAW else DMA37MD_SINGLE)
               | (DMA37MD_WRITE if flags & ISADMA_READ else DMA37MD_READ) | (chan & 3))
    ch.page = (phys >> 16) & 0xff
    if chan & 4:
        ch.base_addr, ch.base_count = (phys >> 1) & 0xffff, ((nbytes >> 1) - 1) & 0xffff
    else:
        ch.base_addr, ch.base_count = phys & 0xffff, (nbytes - 1) & 0xffff
    _reload(ch)
    ch.masked = False


def _reload(ch: Channel8237) -> None:
    ch.addr, ch.count, ch.left = ch.base_addr, ch.base_count, ch.base_count + 1


def isa_dmadone(kernel, flags, addr, nbytes, chan) -> None:
    """End a transfer: mask the channel (unless auto-init) and, for a bounced read,
    copy the bounce buffer back to the caller's buffer."""
    st, bit, _ = _state(kernel, chan, "isa_dmadone")
    if not (st.busy | st.auto_mode) & bit:
        st.messages.append(f"isa_dmadone: channel {chan} not busy")
    if not st.auto_mode & bit:
        st.channels[chan].masked = True
    if st.bounced & bit:
        if flags & ISADMA_READ:
            n = check_uint("isa_dmadone", "nbytes", nbytes)
            kernel.vm.copy(check_uint("isa_dmadone", "addr", addr), st.bouncebuf[chan], n)
            st.bounced_bytes += n
        st.bounced &= ~bit
    st.busy &= ~bit


def isa_dmastatus(kernel, chan) -> int:
    """Bytes the channel has still to transfer; -1 if not in use, -2 if idle."""
    st, bit, inuse = _state(kernel, chan, "isa_dmastatus", "active")
    if not inuse:
        return -1
    if _idle(st, bit, chan):
        return -2
    cnt = (st.channels[chan].count + 1) & 0xffff
    return cnt * 2 if chan >= 4 else cnt


def isa_dmastop(kernel, chan) -> int:
    """Mask the channel and return isa_dmastatus."""
    st, bit, _ = _state(kernel, chan, "isa_dmastop")
    if _idle(st, bit, chan):
        return -2
    st.channels[chan].masked = True
    return isa_dmastatus(kernel, chan)


# --- the device side -----------------------------------------------------------------------
def device_transfer(kernel, chan, data=None, nbytes: int | None = None) -> bytes:
    """The device moves data through an unmasked channel, as the 8237 directs it.

    For an ISADMA_READ transfer (device -> memory) pass ``data``: it is written to
    physical memory and b"" is returned.  For ISADMA_WRITE (memory -> device) pass
    ``nbytes``: that many bytes are read from physical memory and returned.  The
    address register advances (wrapping at 16 bits inside its window), the count
    falls; at terminal count a single-mode channel masks itself and an auto-init one
    reloads."""
    _chan(chan, "device_transfer")
    st = existing_state(kernel, IsaDma)
    ch = None if st is None else st.channels[chan]
    if ch is None or ch.masked:
        raise ValueError(f"device_transfer: DMA channel {chan} is masked (no isa_dmastart, "
                         "or the transfer is over)")
    to_memory = ch.mode & DMA37MD_WRITE
    if to_memory:
        if data is None or nbytes is not None:
            raise ValueError("device_transfer: a device-to-memory (ISADMA_READ) transfer takes data")
        data = bytes(data)
        n = len(data)
    else:
        if nbytes is None or data is not None:
            raise ValueError("device_transfer: a memory-to-device (ISADMA_WRITE) transfer takes nbytes")
        n = check_uint("device_transfer", "nbytes", nbytes)
    unit = 2 if chan & 4 else 1
    if n % unit or n // unit > ch.left:
        raise ValueError(f"device_transfer: {n} bytes do not fit channel {chan}'s remaining "
                         f"{ch.left} transfers of {unit} byte(s)")
    out = []
    pos = 0
    while pos < n:
        run = min(n - pos, (0x10000 - ch.addr) * unit)   # up to the address register's wrap
        phys = ch.phys(chan)
        if to_memory:
            phys_write(kernel, phys, data[pos:pos + run])
        else:
            out.append(phys_read(kernel, phys, run))
        ch.addr = (ch.addr + run // unit) & 0xffff
        ch.left -= run // unit
        pos += run
    ch.count = (ch.left - 1) & 0xffff
    st.device_bytes += n
    if ch.left == 0:
        if st.auto_mode & (1 << chan):
            _reload(ch)
        else:
            ch.masked = True
    return b"".join(out)
