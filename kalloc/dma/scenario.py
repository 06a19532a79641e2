"""The ISA DMA regression of the 2003 slab allocator, reproduced from boot to attach.

Deterministic: one seed, one op stream, three kernels; the same table every run.

The seed commit (DragonFly, 2003-08-28) lists it first among "PROBLEMS AS OF THIS
COMMIT": bounce-buffer allocation for ISA DMA fails "due to the large backing block size
used by the slab allocator" (docs/research/slab.md section 7 (1)).  The mechanism, in three
facts this simulator has from the sources:

1. Every new slab zone is ZoneSize bytes (128 KiB above 128 MiB of RAM), per CPU and per
   size class, and is allocated with M_ZERO; kmem_slab_alloc ORs VM_ALLOC_ZERO into the
   page class, and in 2003 the classes were *states*, so every zone page is a
   VM_ALLOC_ZERO request (slab.md section 5.1).
2. The free queues of 4.8, unchanged in DragonFly until 2003-09-14, hand zeroed-page
   requests the *tail*: the lowest physical pages first (kmem_map.md section 2.3).
   Everything else takes the head, the highest pages.  The fix queues the boot's pages
   alternately at the head and the tail, so that both ends start high (kalloc.machine).
3. contigmalloc finds a physically contiguous run by scanning from page 0, and an ISA
   bounce buffer must lie below 16 MiB, in one 64/128 KiB window (kmem_map.md 3, 4.3).

So under the 2003-08 order the zones of a booting kernel fill physical memory from the
bottom up, while 4.8's kmem_map buckets and the slab under the 2003-09-14 order
(both ends of every queue start high) fill it from the top down::

    0      1M kernel   ~5M                        16M                          256M
    |BIOS|hole|image |###slab zones, 2003-08###....|............................|
    |BIOS|hole|image |.............................|.......### kmem_map, 2003-09-14

A driver that attaches late -- a sound card's module loaded after boot, wanting 64 KiB
on channel 5 -- then finds no free 64 KiB run below 16 MiB on the first kernel and one
at once on the other two.

The scenario
------------
Each configuration boots the same i386 machine (default 256 MiB, 2 CPUs: ZoneSize
128 KiB) with the same physical layout wired before the allocator starts: page 0 (BIOS
data), the extended BIOS data area at 639 KiB, the 640 KiB-1 MiB ISA hole, the AP
trampoline page (SMP), and what the loader and locore put at 1 MiB (``kernel_image``,
``KERNEL_IMAGE``: see there).  Then it runs ``boot_threads``, an early-boot load
derived from what a 2003 i386 kernel allocates with malloc(9) (the table in
``boot_threads``; sizes are the i386 structs of 4.8 rounded to our best estimate, counts
are a typical 2003 PC), then the late driver's kldload, then ``isa_dmainit(channel,
bounce)`` -- identical op stream for every configuration.  The figures: free memory
below 16 MiB and its largest run at the moment of the attach, the allocator's pages
below 16 MiB, and whether the bounce buffer (and a DMA round trip through it) works.

Besides malloc(9) the load uses vm_zone (kalloc.vm_zone) for vnodes, procs, vmspaces
and pathname buffers, as both kernels did: its pages come from kmem_alloc, which asks for
VM_ALLOC_ZERO, so they too go low under the 4.8 and 2003-08 orders -- in every kernel,
not only the slab's.  Left out, and why: mbufs and clusters (both kernels take them from
mb_map with kmem_malloc: INTERRUPT/SYSTEM pages, high), the buffer cache and page cache
(VM_ALLOC_NORMAL, high), page tables and the vm_page array (placed before the allocator
runs), and user processes' zero-fill pages (not simulated; in 4.8 vm_fault asks for
VM_ALLOC_ZERO too, so the kmem_map row is, if anything, kinder to 4.8 than reality).
"""

from __future__ import annotations

import math

from attrs import frozen
from tabulate import tabulate

from kalloc import plugins
from kalloc.backends.base import resolve_options
from kalloc.costs import CostModel
from kalloc.dma import existing_state
from kalloc.dma.contig import ISA_LIMIT, ContigState, contigmalloc, free_below
from kalloc.dma.isa import (ISADMA_READ, ISADMA_WRITE, device_transfer, isa_dma, isa_dma_acquire,
                            isa_dmadone, isa_dmainit, isa_dmastart)
from kalloc.flags import M_NOWAIT, M_WAITOK, M_ZERO
from kalloc.harness import Simulator
from kalloc.machine import ARCHES, Machine, parse_size
from kalloc.malloc import Kernel
from kalloc.vm_zone import zalloc, zfree, zinit
from kalloc.workload import Context, call, free, get, malloc, put

KERNEL_BASE = 0x100000          # KERNLOAD: the i386 kernel is loaded at 1 MiB
# What sits at 1 MiB when the VM starts: a GENERIC 4.8 / DragonFly 2003
# i386 kernel's text + data + bss (about 4.1 MiB), the symbol table the loader loads after
# it for the kernel linker (about 0.4 MiB), then locore's bootstrap pages: the page
# directory, NKPT (30) kernel page tables and proc0's pages (about 0.13 MiB).  About
# 4.6 MiB; rounded down.  docs/isa-dma.md shows the result for 4, 4.5 and 5 MiB.
KERNEL_IMAGE = 4608 << 10
NOWAIT_ZERO = M_NOWAIT | M_ZERO
WAIT_ZERO = M_WAITOK | M_ZERO

CONFIGS = (("slab", "2003-08"), ("slab", "2003-09-14"), ("kmem_map", "4.8"))


# --- checks shared with the isa workload (kalloc_plugins.workloads.isa) ----------------------
def check_kernel_image(image: int) -> None:
    """What the loader leaves at 1 MiB must be whole pages and end below 16 MiB."""
    if image % 4096 or KERNEL_BASE + image > ISA_LIMIT:
        raise ValueError(f"kernel_image must be a page multiple that ends below 16 MiB, got {image}")


def check_bounce(channel: int, size: int) -> None:
    """The late driver's DMA channel and bounce buffer, as isa_dmainit can take them."""
    if isinstance(channel, bool) or not isinstance(channel, int) or channel not in (0, 1, 3, 5, 6, 7):
        raise ValueError(f"channel must be 0, 1, 3 or 5-7 (2 is the floppy controller's, 4 the cascade), "
                         f"got {channel!r}")
    if not 0 < size <= (0x20000 if channel & 4 else 0x10000) or (channel & 4 and size % 2):
        raise ValueError(f"bounce must be 1 byte to {'128' if channel & 4 else '64'} KiB on channel {channel} "
                         f"(an even count on the word channels 5-7), got {size}")


MAX_SCALE = 1000           # 240,000 rc programs: far beyond any boot, still seconds to run


def check_scale(scale: float) -> None:
    """The boot load's multiplier: a number above 0 and at most MAX_SCALE (so not NaN)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_SCALE:
        raise ValueError(f"boot load scale must be positive and finite, got {scale!r} (at most {MAX_SCALE})")


# --- the machine --------------------------------------------------------------------------------
def wired_layout(ncpus: int, kernel_image: int) -> list:
    """Physical [start, end) ranges that are not free RAM when the allocator starts."""
    ranges = [(0, 0x1000),                          # real-mode IVT and BIOS data area
              (0x9f000, 0xa0000),                   # EBDA: the BIOS reports 639 KiB of base memory
              (0xa0000, KERNEL_BASE),               # ISA hole: VGA memory, option ROMs, BIOS
              (KERNEL_BASE, KERNEL_BASE + kernel_image)]
    if ncpus > 1:
        ranges.insert(1, (0x9e000, 0x9f000))        # mp_bootaddress: the AP trampoline page
    return ranges


def boot_wired(backend: str, page_policy: str, physmem, ncpus: int, seed: int = 0,
               kernel_image=KERNEL_IMAGE) -> Kernel:
    """kalloc.boot for an i386 machine whose ``wired_layout`` is taken off the free
    queues before the backend's own boot allocations run (they would otherwise land in
    the ISA hole under a lowest-first order)."""
    mem = parse_size(physmem, "physmem")
    image = parse_size(kernel_image, "kernel_image")
    if isinstance(ncpus, bool) or not isinstance(ncpus, int) or not 1 <= ncpus <= 64:
        raise ValueError(f"ncpus must be an int from 1 to 64, got {ncpus!r}")
    if mem % 4096 or not 32 << 20 <= mem <= 1 << 32:
        raise ValueError(f"physmem must be a page multiple from 32M to 4G for this scenario, got {mem}")
    check_kernel_image(image)
    cls = plugins.backend_class(backend)
    opts = resolve_options(cls, {"page_policy": page_policy})
    machine = Machine(ncpus, mem, ARCHES["i386"], opts["page_policy"])
    take_ranges(machine, wired_layout(ncpus, image))
    k = Kernel(machine, cls, opts, seed)
    plugins.plugin_manager().hook.kalloc_boot(kernel=k)
    return k


def take_ranges(machine, ranges) -> int:
    """Take the still-free pages of physical ``ranges`` off the free queues; the number
    of pages that were already in use (left as they are)."""
    busy = 0
    for lo, hi in ranges:
        for pfn in range(lo >> 12, hi >> 12):
            if machine.page_state[pfn]:
                busy += 1
            else:
                machine.page_take(pfn)
    return busy


def wire_after_boot(kernel, kernel_image=KERNEL_IMAGE) -> int:
    """``wired_layout`` for a kernel that has booted already (a harness run): the pages of
    the layout the backend's boot allocations took are made up for by as many free pages
    right after the image, where those allocations would have gone.  The pages moved;
    ValueError if physical memory ends inside the layout."""
    m = kernel.machine
    end = KERNEL_BASE + kernel_image
    if m.physmem <= end:
        raise ValueError(f"workload 'isa' needs physmem above {end >> 10}K: its PC layout puts kernel_image "
                         f"({kernel_image >> 10}K) at 1M; got physmem {m.physmem >> 10}K")
    moved = busy = take_ranges(m, wired_layout(m.ncpus, kernel_image))
    pfn = end >> 12
    while busy and pfn < m.npages:
        if not m.page_state[pfn]:
            m.page_take(pfn)
            busy -= 1
        pfn += 1
    return moved


# --- the early-boot load ------------------------------------------------------------------------
@frozen
class A:
    """``n`` allocations of ``size`` bytes (or log-uniform in [lo, hi]) of one malloc type;
    ``temp`` ones are freed again when their group ends."""

    mtype: str
    size: object
    n: int = 1
    flags: int = M_WAITOK
    temp: bool = False


# SYSINITs, in order (vfs, kernel linker, interrupts, newbus registration of every driver
# compiled into GENERIC).  The hash tables whose size follows RAM are in kernel_tables.
SYSINIT = (
    A("module", 52, 110),               # module_register: struct module + name, per DECLARE_MODULE
    A("linker", 120, 2),                # the kernel's linker_file and its dependency list
    A("devbuf", 36, 16, M_NOWAIT),      # intrec: one per registered interrupt handler
    A("bus", 36, 140, NOWAIT_ZERO),     # devclass_find_internal(create): devclass + name, per driver
    A("bus", 12, 160, NOWAIT_ZERO),     # devclass_add_driver: driverlink, per driver per bus
    A("mount", 430, 1, WAIT_ZERO),      # vfs_mountroot: the root mount
    A("ufsmnt", 300, 1, WAIT_ZERO),     # ffs_mountfs: struct ufsmount
    A("ufsmnt", 8192, 1),               # ffs_mountfs: the superblock copy (SBSIZE)
    A("ufsmnt", 4096, 1),               # ffs_mountfs: cylinder-group summary (fs_cssize + ncg)
    A("temp", 512, 4, M_WAITOK, True),  # boot-time scratch (mountroot, devclass arrays)
)

# vm_zone zones made at boot (zinit(name, sizeof, 0, 0, zalloc pages per refill)): their
# pages come from kmem_alloc, which asks for VM_ALLOC_ZERO -- the tail, under 4.8 too.
VM_ZONES = (("VNODE", 200, 5),      # vntblinit: struct vnode
            ("PROC", 900, 5),       # procinit: struct proc
            ("VMSPACE", 250, 3),    # vm_init2: struct vmspace (map + pmap)
            ("NAMEI", 1024, 2))     # vfsinit: MAXPATHLEN pathname buffers

# newbus probing of the PCI bus: every PCI driver in GENERIC is tried on every PCI
# function.  device_set_driver mallocs the driver's softc (M_BUS, M_NOWAIT|M_ZERO) before
# DEVICE_PROBE and frees it when the probe fails; kobj_init compiles the driver's class
# (a kobj_ops of 256 cached methods: 1028 bytes, M_KOBJ) the first time.
PCI_FUNCTIONS = 16          # a 2003 chipset: host/AGP/ISA bridges, IDE, 2 USB, audio, SMBus, NIC ...
PCI_DRIVERS = 70            # PCI drivers in a 4.8 GENERIC (NICs, SCSI, bridges, agp, ata, usb)
SOFTC_RANGE = (64, 4096)    # driver softc sizes: bridges tens of bytes, NICs 1-3 KiB (log-uniform)

# The devices that attach, each: its allocations beyond device_t, nameunit and softc.
# name, softc bytes, extra allocations
DEVICES = (
    ("pcib", 40, ()), ("pci", 16, (A("devbuf", 112, PCI_FUNCTIONS),)),      # pci_devinfo per function
    ("agp", 220, ()), ("pcib", 40, ()), ("pci", 16, (A("devbuf", 112, 2),)),
    ("isab", 16, ()), ("isa", 32, (A("temp", 1024, 6, M_NOWAIT, True),)),     # PnP resource parsing
    ("atapci", 120, ()),
    ("ata", 420, (A("ata", 512, 2, M_NOWAIT),)),                            # ata_param (IDENTIFY)
    ("ata", 420, (A("ata", 512, 1, M_NOWAIT),)),
    ("ad", 300, (A("devbuf", 4096, 1, M_NOWAIT),                            # ata_dmaalloc: PRD table
                 A("devbuf", 700, 1), A("devbuf", 276, 2),                  # dsinit: slices, labels
                 A("devt", 150, 12, M_WAITOK))),                            # makedev: ad0s1a..
    ("acd", 400, (A("devbuf", 4096, 1, M_NOWAIT), A("acd", 32, 4, NOWAIT_ZERO))),
    ("uhci", 1900, (A("devbuf", 4096, 4, M_NOWAIT),)),                      # frame list + TD/QH chunks
    ("uhci", 1900, (A("devbuf", 4096, 4, M_NOWAIT),)),
    ("usb", 96, (A("usb", 420, 1, NOWAIT_ZERO), A("usb", 200, 3, NOWAIT_ZERO))),   # root hub
    ("usb", 96, (A("usb", 420, 1, NOWAIT_ZERO), A("usb", 200, 3, NOWAIT_ZERO))),
    ("uhub", 120, (A("usb", 64, 2, NOWAIT_ZERO), A("temp", 256, 2, M_NOWAIT, True))),
    ("uhub", 120, (A("usb", 64, 2, NOWAIT_ZERO), A("temp", 256, 2, M_NOWAIT, True))),
    ("fxp", 1400, (A("devbuf", 31744, 1, NOWAIT_ZERO),                      # cbl_base: 128 TxCBs
                   A("devbuf", 80, 1, NOWAIT_ZERO), A("devbuf", 600, 1, M_NOWAIT),
                   A("ifaddr", 160, 1, WAIT_ZERO), A("ifmaddr", 40, 3),     # if_attach, multicast
                   A("devbuf", 36, 1, M_WAITOK))),                          # bpfattach
    ("miibus", 180, ()), ("inphy", 200, ()),
    ("atkbdc", 120, ()), ("atkbd", 300, (A("devbuf", 3108, 1, M_NOWAIT),    # keymap, accent map,
                                          A("devbuf", 1028, 1, M_NOWAIT),   # function-key table
                                          A("devbuf", 1536, 1, M_NOWAIT))),
    ("psm", 700, ()), ("vga", 64, ()),
    ("sc", 420, (A("devbuf", 8640, 1, WAIT_ZERO),                           # 16 vty ttys
                 A("devbuf", 520, 1, M_WAITOK), A("devbuf", 4000, 1),       # vty0: scr_stat, screen
                 A("devbuf", 16000, 1))),                                   # vty0 history (100 lines)
    ("sio", 640, (A("ttys", 480, 1, WAIT_ZERO),)), ("sio", 640, (A("ttys", 480, 1, WAIT_ZERO),)),
    ("ppc", 160, ()), ("ppbus", 64, ()), ("lpt", 200, ()), ("plip", 420, (A("ifaddr", 160, 1, WAIT_ZERO),)),
    ("ppi", 60, ()), ("fdc", 320, ()), ("fd", 260, (A("devt", 150, 2),)), ("npx", 16, ()), ("pmtimer", 16, ()),
    ("orm", 64, ()), ("lo", 0, (A("ifaddr", 160, 1, WAIT_ZERO), A("ifaddr", 300, 1, WAIT_ZERO))),
)

# /etc/rc, spread over the CPUs: short-lived commands (fork, exec, open files, exit) and
# the daemons that stay.  A process: filedesc0 (164), pargs (8 + argv), sometimes a
# private plimit (188); each file it opens: struct file (68); each new name it looks up:
# a namecache entry (34 + name) and, for a file not seen before, a UFS inode with its
# dinode (~300).  Writes make soft-updates dependencies that live until the disk write
# completes.
RC_COMMANDS = 240           # rc scripts of a 2003 /etc/rc run about this many programs
RC_LOOKUPS = (6, 14)        # new names per command
RC_SOFTDEPS = (0, 6)        # dependencies per command (logs, pid files, /var/run, /tmp)
SOFTDEP = (A("inodedep", 112), A("allocdirect", 72), A("pagedep", 276), A("diradd", 44),
           A("freefrag", 40), A("freefile", 36))
DAEMON = (A("filedesc", 164), A("pargs", (24, 200)), A("file", 68, 4), A("subproc", 188),
          A("cred", 80))
GETTY_TTY = (A("devbuf", 520, 1, M_WAITOK), A("devbuf", 4000), A("devbuf", 16000),   # vty: scr_stat,
             A("ttys", 128, 30))                                                     # screen, history, cblocks
MOUNTS = 3                  # /var, /usr, /tmp after the root
MOUNT = (A("mount", 430, 1, WAIT_ZERO), A("ufsmnt", 300, 1, WAIT_ZERO), A("ufsmnt", 8192),
         A("ufsmnt", (2048, 8192)), A("ufsmnt", (100, 400)))
NETCONF = (A("ifaddr", 160, 2, WAIT_ZERO), A("ifaddr", 300, 2, WAIT_ZERO),          # in_ifaddr, in6_ifaddr
           A("rtable", 120, 10, M_NOWAIT), A("rtable", 32, 10, M_NOWAIT),          # rtentry + keys
           A("ipmaddr", 40, 4), A("ifmaddr", 40, 4))
SWAPON = (A("swap", 35000), A("swap", 120, 1, WAIT_ZERO))                           # blist for 512 MiB swap


def kernel_tables(kernel, cpu: int = 0) -> int:
    """The boot-time hash tables whose size follows RAM, as 4.8 sizes them (maxusers =
    MiB/2 in [32, 384], maxproc = 20 + 16 maxusers, desiredvnodes = maxproc + pages/4;
    hashinit gives the largest power of two not above the count, 4-byte heads).
    Returns the bytes allocated."""
    pages = kernel.machine.npages
    maxusers = min(max(pages // 512, 32), 384)
    maxproc = 20 + 16 * maxusers
    vnodes = maxproc + pages // 4
    total = 0
    for name, count in (("vfscache", 2 * vnodes),   # nchinit
                        ("ufsihash", vnodes),       # ufs_ihashinit
                        ("inodedep", vnodes),       # softdep_initialize
                        ("pagedep", vnodes // 5),
                        ("newblk", 64),
                        ("proc", maxproc // 4),     # pidhashtbl
                        ("proc", maxproc // 4),     # pgrphashtbl
                        ("uidinfo", maxproc // 16)):
        size = 4 << (count.bit_length() - 1)
        kernel.malloc(size, kernel.malloc_type(name), M_WAITOK, cpu)
        total += size
    return total


def _zalloc(kernel, zone):
    return zalloc(zone)


def _zfree(kernel, zone, item) -> None:
    zfree(zone, item)


def _size(rng, size) -> int:
    if isinstance(size, int):
        return size
    lo, hi = size
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _group(rows, rng, kept: list):
    """Allocate ``rows``; keep the lasting ones in ``kept``, free the temporary ones."""
    temps = []
    for r in rows:
        for _ in range(r.n):
            h = yield malloc(_size(rng, r.size), r.mtype, r.flags)
            if h is not None:
                (temps if r.temp else kept).append(h)
    for h in temps:
        yield free(h)


def _device(name: str, softc: int, rng, kept: list):
    """device_add_child + attach: device_t, nameunit, softc, resources, extras."""
    yield from _group((A("bus", 80, 1, NOWAIT_ZERO), A("bus", 12, 1, NOWAIT_ZERO)), rng, kept)
    if softc:
        yield from _group((A("bus", softc, 1, NOWAIT_ZERO),), rng, kept)
    yield from _group((A("bus", 28, 2, M_NOWAIT), A("rman", 52, 2, NOWAIT_ZERO)), rng, kept)


def _kernel(ctx, zones: dict):
    """CPU 0 until userland: SYSINITs, newbus probe and attach; then wakes rc on every CPU."""
    rng = ctx.rng("kernel")
    kept: list = []
    yield call(kernel_tables)
    for name, size, pages in VM_ZONES:
        zones[name] = yield call(zinit, name, size, 0, 0, pages)
    yield from _group(SYSINIT, rng, kept)
    drivers = ctx.rng("drivers")
    softcs = [_size(drivers, SOFTC_RANGE) for _ in range(PCI_DRIVERS)]
    compiled: set = set()
    for _func in range(PCI_FUNCTIONS):              # device_probe_child on pci0
        for d, softc in enumerate(softcs):
            if d not in compiled:
                compiled.add(d)
                yield from _group((A("kobj", 1028),), rng, kept)
            yield from _group((A("bus", 12, 1, NOWAIT_ZERO, True), A("bus", softc, 1, NOWAIT_ZERO, True)),
                              rng, kept)
    for name, softc, extra in DEVICES:
        yield from _device(name, softc, rng, kept)
        yield from _group(extra, rng, kept)
        if name == "agp":                           # agp_alloc_gatt: 64 MiB aperture, 4-byte entries
            yield call(contigmalloc, 65536, None, 0, 0, 0xffffffff, 4096, 0)
        elif name == "fdc":                         # fdc_attach: isa_dmainit(2, MAX_SEC_SIZE)
            yield call(isa_dma_acquire, 2)
            yield call(isa_dmainit, 2, 1024)
    for cpu in range(ctx.ncpus):
        yield put(ctx.queue("rc"), cpu)


def _rc(ctx, cpu: int, scale: float, zones: dict):
    """/etc/rc's share of this CPU: mounts and network (CPU 0), commands, daemons, gettys."""
    yield get(ctx.queue("rc"))
    rng = ctx.rng(f"rc{cpu}")
    kept: list = []
    n = ctx.ncpus
    if cpu == 0:
        for _ in range(MOUNTS):
            yield from _group(MOUNT, rng, kept)
        yield from _group(NETCONF + SWAPON, rng, kept)
    deps: list = []                                  # soft-updates work in flight (FIFO)
    for _ in range(cpu, round(RC_COMMANDS * scale), n):
        proc: list = []
        items = [(zones["PROC"], (yield call(_zalloc, zones["PROC"]))),          # fork
                 (zones["VMSPACE"], (yield call(_zalloc, zones["VMSPACE"])))]
        yield from _group(DAEMON[:2], rng, proc)     # fork (filedesc) + exec (pargs)
        if rng.random() < 0.2:
            yield from _group(DAEMON[3:4], rng, proc)  # setrlimit: a private plimit
        yield from _group((A("file", 68, rng.randint(1, 4)),), rng, proc)
        for _ in range(rng.randint(*RC_LOOKUPS)):
            path = yield call(_zalloc, zones["NAMEI"])                      # namei's buffer
            yield from _group((A("vfscache", 34 + rng.randint(3, 24)),), rng, kept)
            if rng.random() < 0.7:                   # a file not seen before: vnode + inode
                yield call(_zalloc, zones["VNODE"])
                yield from _group((A("ffsnode", 300),), rng, kept)
            yield call(_zfree, zones["NAMEI"], path)
        for _ in range(rng.randint(*RC_SOFTDEPS)):
            yield from _group((rng.choice(SOFTDEP),), rng, deps)
        while len(deps) > 40:
            yield free(deps.pop(0))
        for h in proc:                               # exit
            yield free(h)
        for z, item in items:
            yield call(_zfree, z, item)
    for i in range(cpu, 20, n):                      # 12 daemons (syslogd, inetd, cron, sshd,
        yield call(_zalloc, zones["PROC"])            # sendmail ...), then getty on ttyv0..7
        yield call(_zalloc, zones["VMSPACE"])
        yield from _group(DAEMON if i < 12 else DAEMON[:3] + GETTY_TTY, rng, kept)
    for h in deps:
        yield free(h)
    yield put(ctx.queue("booted"), cpu)


def boot_threads(ctx, scale: float = 1.0) -> list:
    """The early-boot load as workload threads: ``kernel`` on CPU 0, then ``rc<N>`` on
    every CPU; each rc thread puts a token in ``ctx.queue("booted")`` when it is done."""
    check_scale(scale)
    zones: dict = {}                                 # made by the kernel thread, used by rc
    return [(0, "kernel", _kernel(ctx, zones))] + [(c, f"rc{c}", _rc(ctx, c, scale, zones))
                                                   for c in range(ctx.ncpus)]


def kldload(ctx):
    """The late driver's module load (link_elf_load_file): the linker_file, the module
    image (sound.ko + snd_sb16.ko), its symbol and string tables, a scratch page."""
    yield from _group((A("linker", 120, 2, WAIT_ZERO), A("linker", 4096, 1, M_WAITOK, True),
                       A("linker", 98304), A("linker", 14000), A("linker", 9000)), ctx.rng("kldload"), [])


# --- the scenario -------------------------------------------------------------------------------
def _late_attach(kernel, channel: int, bounce: int) -> tuple:
    """isa_dma_acquire + isa_dmainit as the late driver does, then a write and a read
    through the bounce buffer with the bytes checked; (status, round_trip_ok)."""
    isa_dma_acquire(kernel, channel)
    status = isa_dmainit(kernel, channel, bounce)
    if status:
        return status, False
    return status, dma_round_trip(kernel, channel, min(bounce, 16384), b"\x5a\xa5kalloc")


def dma_round_trip(kernel, channel: int, nbytes: int, pattern: bytes, cpu: int = 0) -> bool:
    """One ISADMA_WRITE and one ISADMA_READ of ``nbytes`` from a malloc'd buffer, with the
    device side simulated; True if the device got and delivered the bytes intact."""
    devbuf = kernel.malloc_type("devbuf", "device driver memory")
    buf = kernel.malloc(nbytes, devbuf, M_WAITOK, cpu)
    out = (pattern * (nbytes // len(pattern) + 1))[:nbytes]
    kernel.write(buf, out)
    isa_dmastart(kernel, ISADMA_WRITE, buf, nbytes, channel)
    sent = device_transfer(kernel, channel, nbytes=nbytes)
    isa_dmadone(kernel, ISADMA_WRITE, buf, nbytes, channel)
    back = out[::-1]
    isa_dmastart(kernel, ISADMA_READ, buf, nbytes, channel)
    device_transfer(kernel, channel, data=back)
    isa_dmadone(kernel, ISADMA_READ, buf, nbytes, channel)
    ok = sent == out and kernel.read(buf, nbytes) == back
    kernel.free(buf, devbuf, cpu)
    return ok


def _low_memory(kernel, wired: list) -> dict:
    """Who holds physical memory below 16 MiB, in pages."""
    state = kernel.machine.page_state
    limit = ISA_LIMIT >> 12
    layout = sum(min(hi, ISA_LIMIT) - lo for lo, hi in wired) >> 12
    contig = existing_state(kernel, ContigState)
    contig_pages = 0 if contig is None else sum(
        max(0, min(pfn + size // 4096, limit) - pfn) for size, pfn in contig.live.values())
    used = limit - bytes(state[:limit]).count(0)
    windows = sum(1 for w in range(0, limit, 16) if not any(state[w:w + 16]))
    return {"kernel_pages": used - layout - contig_pages, "contig_pages": contig_pages,
            "wired_pages": layout, "free_64k_windows": windows}


def _zones_below(kernel) -> int | None:
    """Slab zones with a page below 16 MiB (None for a backend without zones)."""
    be = kernel.backend
    zone, zones = getattr(be, "zone_size", None), getattr(be, "zones", None)
    if not zone or not isinstance(zones, dict):
        return None
    pmap, limit = kernel.vm.pmap, ISA_LIMIT >> 12
    return sum(1 for base in zones
               if any(pmap.get((base >> 12) + i, limit) < limit for i in range(zone >> 12)))


def isa_dma_scenario(physmem="256M", ncpus: int = 2, seed: int = 0, channel: int = 5, bounce="64K",
                     kernel_image=KERNEL_IMAGE, scale: float = 1.0, configs=CONFIGS) -> list:
    """Boot each (backend, page_policy) of ``configs`` on the same machine, run the same
    early-boot load and late driver load, then isa_dmainit(channel, bounce).  One row
    (a dict) per configuration."""
    size = parse_size(bounce, "bounce")
    check_bounce(channel, size)
    check_scale(scale)
    rows = []
    for backend, policy in configs:
        k = boot_wired(backend, policy, physmem, ncpus, seed, kernel_image)
        wired = wired_layout(ncpus, parse_size(kernel_image, "kernel_image"))
        sim = Simulator(k, CostModel.from_config({}), workload="isa")
        ctx = Context("isa", {"scale": scale}, ncpus, seed)
        for cpu, name, gen in boot_threads(ctx, scale):
            sim.add_thread(cpu, name, gen)
        sim.add_thread(0, "kldload", _after_boot(ctx, kldload(ctx)))
        sim.run()
        k.machine.ipi_handler = k.machine.passive_handler = None   # the attach runs outside the harness
        low = free_below(k)
        held = _low_memory(k, wired)
        zones = _zones_below(k)
        status, round_trip = _late_attach(k, channel, size)
        st = isa_dma(k)
        rows.append({
            "backend": backend,
            "page_policy": k.machine.page_policy,
            "ncpus": ncpus,
            "physmem": k.machine.physmem,
            "bounce_ok": status == 0,
            "bounce_via": st.via[channel],
            "dma_round_trip_ok": round_trip,
            "free_below_16m_bytes": low["free_bytes"],
            "largest_free_run_below_16m_bytes": low["largest_run_bytes"],
            "free_64k_windows_below_16m": held["free_64k_windows"],
            "zones_or_pages_below_16m": (f"{zones} zones, {held['kernel_pages']} pages" if zones is not None
                                         else f"{held['kernel_pages']} pages"),
            "kernel_pages_below_16m": held["kernel_pages"],
            "slab_zones_below_16m": zones,
            "contig_pages_below_16m": held["contig_pages"],
            "allocator_bytes": k.footprint() - (held["wired_pages"] << 12),
            "failed_mallocs": sim.ops["failed"],
            "messages": list(st.messages),
        })
    return rows


def _after_boot(ctx, gen):
    """Run ``gen`` once every rc thread has put its token in ``booted``."""
    for _ in range(ctx.ncpus):
        yield get(ctx.queue("booted"))
    yield from gen


def format_table(rows: list) -> str:
    """The scenario table for the terminal: one line per configuration."""
    mib = 1 << 20
    body = [[r["backend"], r["page_policy"], "ok" if r["bounce_ok"] else "FAILED",
             f"{r['free_below_16m_bytes'] / mib:.2f}", f"{r['largest_free_run_below_16m_bytes'] >> 10}",
             r["free_64k_windows_below_16m"], r["zones_or_pages_below_16m"],
             f"{r['allocator_bytes'] / mib:.1f}"]
            for r in rows]
    head = ["backend", "page policy", "bounce buffer", "free <16M (MiB)", "largest run <16M (KiB)",
            "free 64K windows", "kernel memory <16M", "kernel memory (MiB)"]
    legend = ("bounce buffer: the late driver's isa_dmainit; free <16M, largest run: free physical "
              "memory below 16 MiB just before it, and its longest run of consecutive free pages; "
              "free 64K windows: 64 KiB-aligned blocks below 16 MiB with every page free; kernel "
              "memory <16M: slab zones with a page there, and pages held by malloc, vm_zone and "
              "kmemusage there; kernel memory: all the allocators hold (contigmalloc included)")
    return tabulate(body, head, tablefmt="github") + "\n\n" + legend
