"""vm_zone: FreeBSD 4.8's type-stable zone allocator (zinit / zalloc / zfree), on any backend.

Deterministic: items come out in the order 4.8's vm_zone.c 1.30.2.6 gives them.  Source:
docs/research/kmem_map.md section 5 (and 2.5 for kmem_alloc).  A zone hands out items of one
size and never gives memory back; between two uses only an item's first two words change
(word 0 the free link, word 1 the INVARIANTS marker ZENTRY_FREE 0x12342378)::

    normal zone: refill = kmem_alloc(kernel_map, zalloc pages): VM_ALLOC_ZERO pages, zeroed
        | i0 | i1 | i2 | ... | i(n-2) | i(n-1) |
        zitems -> i(n-2) -> ... -> i1 -> i0 -> (older items)     i(n-1) is returned at once
    ZONE_INTERRUPT zone: KVA for nentries reserved at zinit, INTERRUPT pages mapped on demand
        | mapped pages ........ | not yet mapped ......... |  zkva .. zkva + zpagemax pages
        an item straddling the mapped end becomes usable when the next page arrives

Sizes: zsize = size rounded up to 32 (ZONE_ROUNDING; boot zones keep their size).  A zone
refills while it holds zfreemin = PAGE_SIZE / zsize items or fewer (1 above a page), so it
keeps a reserve of about one page of items::

    size       zsize   items per page   zfreemin
    1..32      32      128              128
    33..64     64      64               64
    100        128     32               32
    200        224     18 (+64 bytes)   18
    4097       4128    -                1

Overhead: up to 31 bytes of rounding per item plus the page tail (PAGE_SIZE mod zsize per
refill page), and the reserve; nothing is ever freed.  Locks: zalloc/zfree take none on a
UP kernel; zalloci/zfreei (and zalloc/zfree on SMP, as in 4.8) count one ``lock_acquires``.

Which zones and items are live is checked always: zfree of an item this zone did not hand
out, or of a free one, raises (``DoubleFree`` says 4.8's "zone: freeing free entry").  The
free list is out of band (a Python list, top = zitems), so word 0 is never written; with the
kernel's ``invariants`` option word 1 holds ZENTRY_FREE while an item is free and a changed
marker panics "zone: entry not free" at zalloc, as in 4.8.

XXX: VM objects are not modelled: an interrupt zone's pages are coloured by their index
in the zone (object colour 0).  kmem_alloc's pages are never PG_ZERO (kalloc has no idle
pre-zeroing), so each is zeroed there and again by _zget's bzero, as the code is written.
"""

from __future__ import annotations

from attrs import define, field

from kalloc.errors import Deadlock, DoubleFree, KernelPanic, WildFree
from kalloc.flags import NOWAIT
from kalloc.machine import VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM, VM_ALLOC_ZERO

ZONE_INTERRUPT = 0x1
ZONE_PANICFAIL = 0x2
ZONE_BOOT = 0x10
ZONE_ROUNDING = 32
ZENTRY_FREE = 0x12342378
VM_ZONE_HEADER = {4: 68, 8: 96}   # sizeof(struct vm_zone) for 4- and 8-byte pointers
SYSCTL_HEADER = "\nITEM            SIZE     LIMIT    USED    FREE  REQUESTS\n"


# --- vm_kern.c: the kernel_map allocations zones (and kmeminit) use ---------------------------
def round_page(vm, n: int) -> int:
    mask = vm.machine.arch.page_mask
    return (n + mask) & ~mask


def kmem_alloc(vm, size: int, who: str) -> int | None:
    """kmem_alloc(kernel_map, size): wired pages, each taken with VM_ALLOC_ZERO and zeroed
    unless PG_ZERO.
    None when kernel_map has no room.  A page shortage sleeps in vm_page_grab (RETRY):
    Deadlock on "vmwait" after undoing.  ``who`` names the caller in that message."""
    a = vm.machine.arch
    size = round_page(vm, size)
    va = vm.kernel_map.findspace(size, a.page_size)
    if va is None:
        return None
    if not vm.map_pages(va, size >> a.page_shift, VM_ALLOC_ZERO, (va - a.kva_min) >> a.page_shift, zero=True):
        vm.kernel_map.remove(va, size)
        raise Deadlock(f"{who} sleeps on \"vmwait\": kmem_alloc({size}) is short of pages "
                       f"({vm.machine.free_count} free)", "vmwait")
    return va


# --- the zones of one kernel -------------------------------------------------------------------
@define(slots=True, eq=False)
class ZoneList:
    """zlist (newest first) and the vm.zone_* sysctl counters of one kernel."""

    zones: list = field(factory=list)
    kmem_pages: int = 0      # vm.zone_kmem_pages: pages of ZONE_INTERRUPT zones
    kern_pages: int = 0      # vm.zone_kern_pages: pages from kmem_alloc
    kmem_kvaspace: int = 0   # vm.zone_kmem_kvaspace: KVA reserved by ZONE_INTERRUPT zones


def zone_list(kernel) -> ZoneList:
    """The kernel's ZoneList (zlist), made by the first zinit."""
    if kernel.zones is None:
        kernel.zones = ZoneList()
    return kernel.zones


@define(slots=True, eq=False)
class VmZone:
    """struct vm_zone.  ``items`` is the free list (top = zitems); ``live`` the items handed
    out; ``ranges`` (first item, count) of every refill, to tell a free item from a stranger."""

    kernel: object
    zname: str = ""
    zsize: int = 0
    zfreecnt: int = 0
    zfreemin: int = 0
    znalloc: int = 0
    zkva: int = 0
    zpagecount: int = 0
    zpagemax: int = 0
    zmax: int = 0
    ztotal: int = 0
    zalloc: int = 0
    zflags: int = 0
    zallocflag: int = 0
    header: int | None = None          # the zone's own malloc(M_ZONE) block (zinit)
    items: list = field(factory=list)
    live: set = field(factory=set)
    ranges: list = field(factory=list)

    def is_item(self, addr: int) -> bool:
        return any(0 <= addr - base < n * self.zsize and (addr - base) % self.zsize == 0
                   for base, n in self.ranges)


def _check_args(name, size, nentries, flags, zalloc) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"zone name must be a non-empty string, got {name!r}")
    for what, v, low in (("size", size, 1), ("nentries", nentries, 0), ("zalloc", zalloc, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"zinit({name!r}): {what} must be an int >= {low}, got {v!r}")
    if isinstance(flags, bool) or not isinstance(flags, int) or flags & ~(ZONE_INTERRUPT | ZONE_PANICFAIL):
        raise ValueError(f"zinit({name!r}): flags must be ZONE_INTERRUPT|ZONE_PANICFAIL bits, got {flags!r}")
    if flags & ZONE_INTERRUPT and not nentries:
        raise ValueError(f"zinit({name!r}): a ZONE_INTERRUPT zone needs nentries > 0 (its hard limit)")


def zinitna(z: VmZone, name: str, size: int, nentries: int, flags: int, zalloc: int) -> bool:
    """Initialise a zone (or finish a boot zone).  ZONE_INTERRUPT reserves KVA for
    nentries items now; False when kernel_map has no room for it."""
    _check_args(name, size, nentries, flags, zalloc)
    vm = z.kernel.vm
    zl = zone_list(z.kernel)
    if not z.zflags & ZONE_BOOT:
        z.zsize = (size + ZONE_ROUNDING - 1) & ~(ZONE_ROUNDING - 1)
        z.zfreecnt = z.ztotal = z.zmax = z.znalloc = 0
        z.zname = name
        zl.zones.insert(0, z)
    z.zflags |= flags
    if z.zflags & ZONE_INTERRUPT:
        totsize = round_page(vm, z.zsize * nentries)
        zl.kmem_kvaspace += totsize
        zkva = vm.kernel_map.findspace(totsize, vm.machine.arch.page_size)   # kmem_alloc_pageable
        if zkva is None:
            # zlist = z->znext: z leaves the list, and so does every zone made after it.  For
            # a zone zinit just made that is z alone; for a boot zone zbootinit'd before other
            # zones were made, those vanish from vm.zone too (they still work), as in 4.8.
            if z in zl.zones:
                del zl.zones[:zl.zones.index(z) + 1]
            return False
        z.zkva = zkva
        z.zpagemax = totsize // vm.machine.arch.page_size
        z.zallocflag = VM_ALLOC_INTERRUPT
        z.zmax += nentries
    else:
        z.zallocflag = VM_ALLOC_SYSTEM
        z.zmax = 0
    ps = vm.machine.arch.page_size
    z.zfreemin = 1 if z.zsize > ps else ps // z.zsize
    z.zpagecount = 0
    z.zalloc = zalloc or 1
    return True


def zinit(kernel, name: str, size: int, nentries: int = 0, flags: int = 0, zalloc: int = 1) -> VmZone | None:
    """A new zone: its header is malloc'd (type "ZONE", M_NOWAIT) from the kernel's own
    allocator, then zinitna.  None when either fails."""
    _check_args(name, size, nentries, flags, zalloc)
    mzone = kernel.malloc_type("ZONE", "Zone header")
    header = kernel.malloc(VM_ZONE_HEADER[kernel.machine.arch.ptr_size], mzone, NOWAIT)
    if header is None:
        return None
    z = VmZone(kernel, header=header)
    if not zinitna(z, name, size, nentries, flags, zalloc):
        kernel.free(header, mzone)
        return None
    return z


def zbootinit(kernel, name: str, size: int, item: int, nitems: int) -> VmZone:
    """A zone over a static array of nitems at ``item`` (mapped memory), made before the VM
    is up: size not rounded, all items free, zfreemin 0."""
    _check_args(name, size, nitems, 0, 0)
    z = VmZone(kernel, zname=name, zsize=size, zflags=ZONE_BOOT)
    kernel.vm.zero(item, nitems * size)
    _link(z, item, nitems)
    z.ranges.append((item, nitems))
    z.zfreecnt = z.zmax = z.ztotal = nitems
    zone_list(kernel).zones.insert(0, z)
    return z


# --- zalloc / zfree -------------------------------------------------------------------------
def _marker(z: VmZone, item: int, value: int) -> None:
    """INVARIANTS: write word 1 of an item."""
    w = z.kernel.machine.arch.ptr_size
    z.kernel.vm.write(item + w, value.to_bytes(w, "little"))


def _link(z: VmZone, item: int, n: int) -> None:
    """Push n items starting at ``item`` in ascending order: the highest ends at the head."""
    new = range(item, item + n * z.zsize, z.zsize)
    z.items.extend(new)
    if z.kernel.options["invariants"]:
        for it in new:
            _marker(z, it, ZENTRY_FREE)


def _pop(z: VmZone) -> int:
    item = z.items.pop()
    if z.kernel.options["invariants"]:
        w = z.kernel.machine.arch.ptr_size
        if int.from_bytes(z.kernel.vm.read(item + w, w), "little") != ZENTRY_FREE:
            raise KernelPanic("zone: entry not free")
        _marker(z, item, 0)
    z.zfreecnt -= 1
    z.znalloc += 1
    return item


def _zget_interrupt(z: VmZone) -> tuple[int, int]:
    """Map up to zalloc more INTERRUPT pages of the reserved KVA: (first new item, count)."""
    vm, m = z.kernel.vm, z.kernel.machine
    ps = m.arch.page_size
    nbytes = z.zpagecount * ps
    nbytes -= nbytes % z.zsize
    i = 0
    while i < z.zalloc and z.zpagecount < z.zpagemax:
        pfn = m.page_alloc(z.zallocflag, z.zpagecount)
        if pfn < 0:
            break
        va = z.zkva + z.zpagecount * ps
        vm.enter(va, pfn)
        vm.zero(va, ps)
        z.zpagecount += 1
        zone_list(z.kernel).kmem_pages += 1
        i += 1
    return z.zkva + nbytes, (z.zpagecount * ps - nbytes) // z.zsize


def _zget_kernel_map(z: VmZone) -> tuple[int, int]:
    """kmem_alloc zalloc pages from kernel_map and zero them: (first item, count)."""
    nbytes = z.zalloc * z.kernel.machine.arch.page_size
    item = kmem_alloc(z.kernel.vm, nbytes, f"zalloc({z.zname})") if nbytes else None
    if item is None:
        return 0, 0
    zone_list(z.kernel).kern_pages += z.zalloc
    z.kernel.vm.zero(item, nbytes)
    return item, nbytes // z.zsize


def _zget(z: VmZone) -> int | None:
    """Refill: link all new items but the last, and return the last (highest) at once."""
    item, n = _zget_interrupt(z) if z.zflags & ZONE_INTERRUPT else _zget_kernel_map(z)
    z.ztotal += n
    if n:
        _link(z, item, n - 1)
        z.ranges.append((item, n))
        z.zfreecnt += n - 1
        z.znalloc += 1
        return item + (n - 1) * z.zsize
    return _pop(z) if z.zfreecnt > 0 else None


def zalloc(z: VmZone) -> int | None:
    """An item, or None when the zone cannot grow (MAY SLEEP in kmem_alloc for pages).
    On an SMP kernel this is zalloci, as in 4.8."""
    if z is None:
        raise KernelPanic("zone: invalid zone")
    if z.kernel.machine.ncpus > 1:
        _count_lock(z)
    if z.zfreecnt <= z.zfreemin:
        item = _zget(z)
        if item is None:
            if z.zflags & ZONE_PANICFAIL:
                raise KernelPanic(f"zalloc({z.zname}) failed")
            return None
    else:
        item = _pop(z)
    z.live.add(item)
    return item


def zfree(z: VmZone, item: int) -> None:
    """Give an item back (LIFO).  On an SMP kernel this is zfreei, as in 4.8."""
    if z is None:
        raise KernelPanic("zone: invalid zone")
    if item not in z.live:
        addr = item if isinstance(item, int) else None
        if addr is not None and z.is_item(addr):
            raise DoubleFree("zone: freeing free entry", addr)
        raise WildFree(f"zfree({z.zname}): {item!r} is not an item of this zone", addr)
    if z.kernel.machine.ncpus > 1:
        _count_lock(z)
    z.live.remove(item)
    z.items.append(item)
    if z.kernel.options["invariants"]:
        _marker(z, item, ZENTRY_FREE)
    z.zfreecnt += 1


def _count_lock(z: VmZone) -> None:
    """splhigh + the zone's simple lock, counted where the harness prices locks."""
    be = z.kernel.backend
    be = getattr(be, "inner", be)        # the debug wrapper forwards counters to its backend
    be.lock_acquires += 1


def zalloci(z: VmZone) -> int | None:
    """zalloc under splhigh and the zone lock (interrupt safe): counts one lock."""
    if z is not None and z.kernel.machine.ncpus == 1:
        _count_lock(z)
    return zalloc(z)


def zfreei(z: VmZone, item: int) -> None:
    """zfree under splhigh and the zone lock (interrupt safe): counts one lock."""
    if z is not None and z.kernel.machine.ncpus == 1:
        _count_lock(z)
    zfree(z, item)


# --- sysctl --------------------------------------------------------------------------------
def zone_line(z: VmZone) -> str:
    """One vm.zone line: the name padded to 13 with ':' after it, then zsize, zmax, used,
    free, requests with C's %6.6u / %8.8u (zero-padded).  A name of 13 characters or more
    overwrites the NUL of tmpname[14] in 4.8 (undefined); kalloc prints name[:13] + ':'."""
    name = z.zname[:13]
    tmpname = (name + ":").ljust(13)
    return "%s %06d, %08d, %06d, %06d, %08d" % (tmpname, z.zsize, z.zmax, z.ztotal - z.zfreecnt,
                                               z.zfreecnt, z.znalloc)


def sysctl_vm_zone(kernel) -> str:
    """``sysctl vm.zone`` as 4.8 prints it: the header, a blank line, a line per zone
    (newest first), no newline after the last."""
    zones = zone_list(kernel).zones
    return SYSCTL_HEADER + ("\n" + "\n".join(zone_line(z) for z in zones) if zones else "")


def zone_stats(kernel) -> dict:
    """vm.zone_* sysctls and one row per zone (JSON-ready)."""
    zl = zone_list(kernel)
    return {"zone_kmem_pages": zl.kmem_pages, "zone_kern_pages": zl.kern_pages,
            "zone_kmem_kvaspace": zl.kmem_kvaspace,
            "zones": [{"name": z.zname, "size": z.zsize, "limit": z.zmax, "used": z.ztotal - z.zfreecnt,
                       "free": z.zfreecnt, "requests": z.znalloc} for z in zl.zones]}
