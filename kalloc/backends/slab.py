"""``slab``: the DragonFly BSD per-CPU slab allocator (kern_slaballoc.c 1.1/1.2, 2003-08-27).

MP SAFE by design: each CPU owns its zones; malloc and a local free take no lock, only a
critical section; a free of another CPU's chunk is forwarded to the owner by IPI.
(research/slab.md; the seed announcement in shared/seed/.)

Zones
-----
Allocations are split into 72 zones by size (``zoneindex``); each zone index has one
chunk size.  A zone is a block of ZoneSize bytes (32K, 64K or 128K, chosen from physical
memory at boot), aligned to ZoneSize, so the zone header is found by masking the pointer::

    base (ZoneSize aligned)                                          base + ZoneSize
    | SLZone header | pad | chunk 0 | chunk 1 | ... | chunk NMax-1 | waste |
    <-- off: header rounded to 8, or to the chunk size for powers of two -->
                           ^ z_UAlloc: next never-used chunk (linear)
    z_PageAry[p]: LIFO free list of the chunks that start in page p; z_FirstFreePg: the
    lowest page whose list may be non-empty, so lower pages are reused first.

    request n      chunking   chunk sizes         zones
    1 - 127          8          8 ... 128           0 - 15
    128 - 255       16        128 ... 256          15 - 23
    256 - 511       32        256 ... 512          23 - 31
    512 - 1023      64        512 ... 1024         31 - 39
    1024 - 2047    128       1024 ... 2048         39 - 47
    2048 - 4095    256       2048 ... 4096         47 - 55
    4096 - 8191    512       4096 ... 8192         55 - 63
    8192 - 16383  1024       8192 ... 16384        63 - 71

Requests of 0 bytes return ZERO_LENGTH_PTR (-8); requests of 16384 or more, and exact
page multiples, go to kmem_slab_alloc: whole pages on kernel_map, counted by page in the
kmemusage array.  Worst case: a CPU that touches every zone index holds 72 zones (9 MiB
at 128K) plus its FreeZones cache, whatever it allocates.

Per CPU (SLGlobalData): ZoneAry[72], singly linked lists of zones with free chunks (the
head is always the one used; a new zone and a zone getting its first free back go to
the head); FreeZones, wholly free zones kept for reuse (ZONE_RELS_THRESH = 2).

What kalloc does differently (XXX)
----------------------------------
* Free lists and kmemusage are Python lists and dicts; no link words are written into the
  simulated chunks, so freed memory keeps the caller's bytes (the M_ZERO bug still shows,
  because reused zones are not re-zeroed).
* No page is PG_ZERO (kalloc does not model idle page zeroing): every M_ZERO page is
  zeroed and counted.
* FreeZones trimming in free() tests ``lockstatus(&kernel_map)``; the simulated kernel_map
  is never held across a free, so that test always passes.
* The ZoneSize-32K quirk (zone 71 holds one chunk and is pushed full): where 1.1 would
  hand out memory past the zone, kalloc panics with the INVARIANTS assertion instead.
* ``ks_maxused`` is kept (the original never updated it).
* Both first-week bugs are knobs, off by default, so comparisons measure the design:
  ``mzero_bug`` (rev 1.1, fixed the same day) and ``realloc_bug`` (Bug A of research/slab.md
  6.1, fixed 2009-04-22).

Knobs from later versions (off by default): ``zone_limit="runtime"`` (2003-10-02:
min(ZoneSize/4, 16384)), ``remote_free="passive"`` (2010-09-18: lock-free RChunks and a
passive IPI only when the owner must be told), ``zone_cache=N`` (FreeZones per CPU; 32
from 2011-03-08), ``mzero_bug=True`` (rev 1.1: M_ZERO could return dirty memory).
"""

from __future__ import annotations

from kalloc.backends.base import Backend, Option, bad_free, check_args
from kalloc.errors import Deadlock, KernelPanic
from kalloc.flags import FLAG_INT, MAY_FAIL, NOWAIT, USE_RESERVE, WAITOK, ZERO
from kalloc.hookspecs import hookimpl
from kalloc.machine import VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM, VM_ALLOC_ZERO

ZALLOC_ZONE_LIMIT = 16384
ZALLOC_MIN_ZONE_SIZE = 32768
ZALLOC_MAX_ZONE_SIZE = 131072
ZALLOC_SLAB_MAGIC = 0x736C6162
NZONES = 72
ZONE_RELS_THRESH = 2
SLZF_UNOTZEROD = 1
WEIRD_ADDR = 0xDEADC0DE

# (chunking, band start, index offset) of each band of zoneindex()
BANDS = ((8, 0, -1), (16, 128, 7), (32, 256, 15), (64, 512, 23), (128, 1024, 31),
         (256, 2048, 39), (512, 4096, 47), (1024, 8192, 55))


def zoneindex(n: int) -> tuple[int, int]:
    """(zone index, chunk size) for a request of n bytes, 1 <= n < 16384, as zoneindex()."""
    if not 0 < n < ZALLOC_ZONE_LIMIT:
        raise KernelPanic(f"Unexpected byte count {n}")
    for chunking, start, offset in reversed(BANDS):
        if n >= start:
            c = (n + chunking - 1) & ~(chunking - 1)
            return c // chunking + offset, c
    raise AssertionError("unreachable")


ZTAB = [(-1, 0)] + [zoneindex(n) for n in range(1, ZALLOC_ZONE_LIMIT)]
CHUNK_SIZES = sorted({c for _, c in ZTAB[1:]})


def zone_size(usable_bytes: int) -> int:
    """kmeminit: ZoneSize doubles from 32K while below 128K and twice it < memory in KB."""
    usesize = usable_bytes // 1024
    zs = ZALLOC_MIN_ZONE_SIZE
    while zs < ZALLOC_MAX_ZONE_SIZE and (zs << 1) < usesize:
        zs <<= 1
    return zs


def zone_header_size(arch: str, version: str = "1.2") -> int:
    """sizeof(SLZone): 9 ints/pointers + z_PageAry[32] (+ z_Flags in 1.2).
    i386: 164 (1.1), 168 (1.2).  amd64 (natural alignment, 8-byte pointers): z_Next at 16,
    the ints up to 44 (48 with padding, with or without z_Flags), z_PageAry at 48: 304."""
    if arch == "i386":
        return 164 if version == "1.1" else 168
    return 304


def first_offset(chunk: int, header: int) -> int:
    """Offset of chunk 0: the header rounded to the chunk size for powers of two, else to 8."""
    align = chunk if chunk & (chunk - 1) == 0 else 8
    return (header + align - 1) & ~(align - 1)


def zone_nmax(zsize: int, chunk: int, header: int) -> int:
    return (zsize - first_offset(chunk, header)) // chunk


class SLZone:
    """A zone header (out of band: the simulated header bytes are not written)."""

    __slots__ = ("base", "magic", "cpu", "nfree", "nmax", "ualloc", "chunk", "first_free_pg",
                 "zi", "page_ary", "flags", "rchunks")

    def __init__(self, base: int):
        self.base = base
        self.rchunks: list = []


class SLGlobalData:
    """Per-CPU slab state: ZoneAry, FreeZones."""

    __slots__ = ("zone_ary", "free_zones")

    def __init__(self):
        self.zone_ary = [[] for _ in range(NZONES)]   # each list: head = last element
        self.free_zones: list = []                     # head = last element


class SlabBackend(Backend):
    NAME = "slab"
    DESCRIPTION = "DragonFly BSD per-CPU slab allocator (2003-08-27), later improvements as knobs"
    DEFAULT_PAGE_POLICY = "2003-09-14"
    ALIGNS_POWERS_OF_TWO = True
    OPTIONS = {
        "zone_limit": Option("constant", "constant: 16384 (2003-08); runtime: min(ZoneSize/4, 16384) (2003-10-02)",
                             ("constant", "runtime")),
        "remote_free": Option("ipi", "ipi: one IPI per cross-CPU free (2003); passive: RChunks + passive IPI (2010)",
                              ("ipi", "passive")),
        "zone_cache": Option(ZONE_RELS_THRESH, "wholly free zones kept per CPU (2 in 2003, 32 from 2011-03-08)"),
        "mzero_bug": Option(False, "rev 1.1: M_ZERO chunks of a zone reused from FreeZones are not zeroed"),
        "realloc_bug": Option(False, "2003-2009: realloc of a zone chunk to >= 16384 bytes panics "
                                     "'Unexpected byte count' (fixed 2009-04-22)"),
    }

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        m = self.machine
        a = m.arch
        self.ncpus = m.ncpus
        self.page_size = ps = a.page_size
        self.page_mask = ps - 1
        self.zero_length_ptr = (1 << (8 * a.ptr_size)) - 8
        limsize = min(m.npages * ps, a.kva_size)
        self.zone_size = zone_size(limsize)
        self.zone_mask = self.zone_size - 1
        self.base_mask = ~self.zone_mask
        self.page_shift = a.page_shift
        self.zone_pages = self.zone_size // ps
        self.zone_limit = (min(self.zone_size // 4, ZALLOC_ZONE_LIMIT) if options["zone_limit"] == "runtime"
                           else ZALLOC_ZONE_LIMIT)
        self.header = zone_header_size(a.name, "1.1" if options["mzero_bug"] else "1.2")
        self.type_limit = limsize // 10
        self.gd = [SLGlobalData() for _ in range(m.ncpus)]
        self.zone_ary = [g.zone_ary for g in self.gd]
        self.zones: dict = {}        # zone base -> SLZone
        self.large: dict = {}        # kmemusage: address of a large block -> ku_pagecnt
        self.live: dict = {}         # address -> malloc type, every live allocation
        self.passive = options["remote_free"] == "passive"
        self.mzero_bug = options["mzero_bug"]
        self.zone_cache = options["zone_cache"]
        self.kmem_slab_frees = 0
        if options["invariants"]:
            self.free = self._free_invariants
        self.kmemusage_va = None
        if a.name == "i386":   # one 4-byte entry per KVA page, allocated at boot with M_ZERO
            self.kmemusage_va = self.kmem_slab_alloc(a.kva_size // ps * 4, ps, WAITOK | ZERO)

    def default_type_limit(self) -> int:
        return self.type_limit

    # --- kmem_slab_alloc / kmem_slab_free -----------------------------------------------
    def kmem_slab_alloc(self, size: int, align: int, f: int):
        """Pages on kernel_map (research/slab.md 6.2); None, a Deadlock (vm_wait) or the panic."""
        ps = self.page_size
        size = (size + ps - 1) & ~(ps - 1)
        vm = self.vm
        va = vm.kernel_map.findspace(size, align)
        if va is None:
            if f & MAY_FAIL:
                return None
            raise KernelPanic("kmem_slab_alloc(): kernel_map ran out of space!")
        if f & ZERO:
            pclass = VM_ALLOC_ZERO        # 2003 quirk: ZERO (3) ORed into a state
        elif f & NOWAIT and not f & USE_RESERVE:
            pclass = VM_ALLOC_INTERRUPT
        else:
            pclass = VM_ALLOC_SYSTEM
        npages = size // ps
        if not vm.map_pages(va, npages, pclass, (va - self.machine.arch.kva_min) // ps):
            vm.kernel_map.remove(va, size)
            if f & NOWAIT:
                return None
            raise Deadlock(f"kmem_slab_alloc({size}) sleeps in vm_wait: {self.machine.free_count} "
                           f"free pages", channel="vmwait")
        if f & ZERO:
            vm.zero(va, size)
        return va

    def kmem_slab_free(self, va: int, size: int) -> None:
        self.vm.unmap_pages(va, size // self.page_size)
        self.vm.kernel_map.remove(va, size)
        self.kmem_slab_frees += 1

    # --- malloc ---------------------------------------------------------------------------
    def malloc(self, size, mtype, flags=2, cpu=0):
        """(PER-CPU) M_NOWAIT, M_WAITOK, M_ZERO, M_USE_RESERVE, M_NULLOK."""
        f = FLAG_INT.get(flags, -1)
        if f < 0 or size.__class__ is not int or size < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            size, f = check_args(size, flags, cpu, self.ncpus)
        try:
            if mtype._k is not self.kernel:
                self.kernel.bind_type(mtype)
        except AttributeError:
            self.kernel.bind_type(mtype)      # not a MallocType: a clear TypeError
        mtype.calls += 1
        if mtype.memuse >= mtype.limit:
            if f & MAY_FAIL:
                return None
            raise KernelPanic(f"{mtype.name}: malloc limit exceeded")
        if size >= self.zone_limit or not size & self.page_mask:
            if size == 0:
                return self.zero_length_ptr
            return self._malloc_large(size, mtype, f)
        zi, chunk = ZTAB[size]
        self.crit_sections += 1
        zl = self.zone_ary[cpu][zi]
        if zl:
            z = zl[-1]
            n = z.nfree
            if n <= 1:
                if n <= 0:
                    raise KernelPanic(f"assertion: z->z_NFree > 0 in malloc (zone {zi}, chunk {chunk}: "
                                      f"at ZoneSize {self.zone_size} it holds {z.nmax}; use zone_limit=runtime)")
                zl.pop()
            z.nfree = n - 1
            pa = z.page_ary
            pg = z.first_free_pg
            if pg < len(pa) and pa[pg]:
                addr = pa[pg].pop()
                self.cache_hot += 1
                zero = f & ZERO
            else:
                addr, zero = self._scan_or_fresh(z, pg, f)
        else:
            addr, zero = self._new_zone(zi, chunk, cpu, f)
            if addr is None:
                return None
        if zero:
            self.vm.zero(addr, chunk)
        self.live[addr] = mtype
        mtype.inuse += 1
        m = mtype.memuse + chunk
        mtype.memuse = m
        if m > mtype.maxused:
            mtype.maxused = m
        return addr

    def _scan_or_fresh(self, z: SLZone, pg: int, f: int):
        """Advance z_FirstFreePg to the first non-empty page list (for good: a lazy lower
        bound); with none, take back the chunks other CPUs freed (passive mode: the zone ran
        out), else the next never-used chunk at z_UAlloc."""
        pa = z.page_ary
        npg = len(pa)
        while pg < npg and not pa[pg]:
            pg += 1
        z.first_free_pg = pg
        if pg == npg and z.rchunks:
            self._drain_remote(z)
            pg = z.first_free_pg
        if pg < npg:
            self.cache_hot += 1
            return pa[pg].pop(), f & ZERO
        addr = z.base + z.ualloc
        z.ualloc += z.chunk
        return addr, f & ZERO and z.flags & SLZF_UNOTZEROD and not self.mzero_bug

    def _new_zone(self, zi: int, chunk: int, cpu: int, f: int):
        gd = self.gd[cpu]
        if gd.free_zones:
            z = gd.free_zones.pop()
            self.vm.zero(z.base, self.header)      # only the header is cleared
            z.flags = SLZF_UNOTZEROD
        else:
            base = self.kmem_slab_alloc(self.zone_size, self.zone_size, f | ZERO)
            if base is None:
                return None, 0
            z = self.zones[base] = SLZone(base)
            z.flags = 0
        off = first_offset(chunk, self.header)
        z.magic = ZALLOC_SLAB_MAGIC
        z.cpu = cpu
        z.zi = zi
        z.chunk = chunk
        z.nmax = (self.zone_size - off) // chunk
        z.nfree = z.nmax - 1
        z.ualloc = off + chunk
        z.first_free_pg = self.zone_pages
        z.page_ary = [[] for _ in range(self.zone_pages)]
        gd.zone_ary[zi].append(z)                  # at the head, even if already full
        zero = f & ZERO and z.flags & SLZF_UNOTZEROD and not self.mzero_bug
        return z.base + off, zero

    def _malloc_large(self, size: int, mtype, f: int):
        if size > self.machine.physmem:
            raise ValueError(f"malloc: size {size} exceeds physical memory ({self.machine.physmem})")
        ps = self.page_size
        size = (size + ps - 1) & ~(ps - 1)
        addr = self.kmem_slab_alloc(size, ps, f)
        if addr is None:
            return None
        self.large[addr] = size // ps
        self.crit_sections += 1
        self.live[addr] = mtype
        mtype.inuse += 1
        mtype.memuse += size
        if mtype.memuse > mtype.maxused:
            mtype.maxused = mtype.memuse
        return addr

    # --- free -----------------------------------------------------------------------------
    def free(self, addr, mtype, cpu=0):
        """(MAY IPI) the owner of the zone performs the free."""
        t = self.live.pop(addr, None)
        if t is not mtype or cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            return self._bad_free(addr, mtype, cpu, t)
        if mtype._k is not self.kernel:
            self.kernel.bind_type(mtype)
        if not addr & self.page_mask and addr in self.large:
            return self._free_large(addr, mtype)
        z = self.zones[addr & self.base_mask]
        if z.cpu == cpu:
            self.crit_sections += 1
            pgno = (addr - z.base) >> self.page_shift
            z.page_ary[pgno].append(addr)
            if pgno < z.first_free_pg:
                z.first_free_pg = pgno
            mtype.inuse -= 1
            mtype.memuse -= z.chunk
            n = z.nfree + 1
            z.nfree = n
            if n == 1 or n == z.nmax:
                self._zone_transition(z, n)
            return None
        self.remote_frees += 1
        if self.passive:
            return self._free_passive(z, addr, mtype, cpu)
        self.machine.send_ipi(cpu, z.cpu, self._free_remote, addr, mtype, z.cpu)

    def _free_remote(self, addr: int, mtype, owner: int) -> None:
        """free_remote, the IPI handler on the owner: free() again, where the local path runs
        (the chunk left ``live`` when the IPI was sent, so a second free meanwhile is caught)."""
        self.live[addr] = mtype
        self.free(addr, mtype, owner)

    def _free_invariants(self, addr, mtype, cpu=0):
        """free() under INVARIANTS (research/slab.md 5.2): the zone magic is asserted and the
        first min(chunk, 64) bytes (64 for a large block) are filled with 0xdeadc0de, "to
        create deterministic failure cases" for code that uses memory after freeing it."""
        if self.live.get(addr) is mtype and addr != self.zero_length_ptr:
            if not addr & self.page_mask and addr in self.large:
                n = 64
            else:
                z = self.zones[addr & self.base_mask]
                if z.magic != ZALLOC_SLAB_MAGIC:
                    raise KernelPanic("assertion: z->z_Magic == ZALLOC_SLAB_MAGIC in free")
                n = min(z.chunk, 64)
            self.vm.write(addr, WEIRD_ADDR.to_bytes(4, "little") * (n // 4))
        SlabBackend.free(self, addr, mtype, cpu)

    def _bad_free(self, addr, mtype, cpu, t):
        if t is not None:
            self.live[addr] = t
        if addr == self.zero_length_ptr:
            return None
        if addr == 0:
            raise KernelPanic("free(NULL): 1.1 indexes kmemusage[] out of range (Fatal trap 12: page fault "
                              "while in kernel mode); DragonFly panics 'trying to free NULL pointer' from 2004")
        check_args(0, 2, cpu, self.ncpus, "free")
        raise bad_free(self, addr, mtype, self.live)

    def _zone_transition(self, z: SLZone, n: int) -> None:
        """First free of a full zone: back at the head of ZoneAry.  Wholly free and not the
        only zone of its size: off ZoneAry, onto FreeZones (research/slab.md 3.4)."""
        zl = self.gd[z.cpu].zone_ary[z.zi]
        if n == 1:
            zl.append(z)
        if n == z.nmax and len(zl) > 1:
            zl.remove(z)
            z.magic = -1
            self._to_free_zones(z)

    def _to_free_zones(self, z: SLZone) -> None:
        """1.1: at exactly zone_cache free zones the new one replaces the head, which goes
        back to the VM; otherwise it is pushed (research/slab.md 3.5)."""
        fz = self.gd[z.cpu].free_zones
        if len(fz) == self.zone_cache:
            old = fz.pop()
            del self.zones[old.base]
            self.kmem_slab_free(old.base, self.zone_size)
        fz.append(z)

    def _free_passive(self, z: SLZone, addr: int, mtype, cpu: int) -> None:
        """2010: CAS the chunk onto the owner zone's RChunks; accounting here; a passive IPI
        only when the zone has left ZoneAry (z_RSignal) and RChunks was empty."""
        self.remote_cas += 1
        mtype.inuse -= 1
        mtype.memuse -= z.chunk
        z.rchunks.append(addr)
        if z.nfree == 0 and len(z.rchunks) == 1:
            self.machine.send_ipi(cpu, z.cpu, self._drain_remote, z)

    def _drain_remote(self, z: SLZone) -> None:
        """kfree_remote on the owner: RChunks back onto the page free lists."""
        chunks, z.rchunks = z.rchunks, []
        if z.magic != ZALLOC_SLAB_MAGIC:
            return
        self.crit_sections += 1
        for addr in chunks:
            pgno = (addr - z.base) >> self.page_shift
            z.page_ary[pgno].append(addr)
            if pgno < z.first_free_pg:
                z.first_free_pg = pgno
            z.nfree += 1
            if z.nfree == 1 or z.nfree == z.nmax:
                self._zone_transition(z, z.nfree)

    def _free_large(self, addr: int, mtype) -> None:
        npages = self.large.pop(addr)
        self.crit_sections += 1
        mtype.inuse -= 1
        mtype.memuse -= npages * self.page_size
        self.kmem_slab_free(addr, npages * self.page_size)

    # --- realloc, usable_size --------------------------------------------------------------
    def realloc(self, addr, size, mtype, flags=2, cpu=0):
        """research/slab.md 6.1: same chunk size, same pointer; else malloc the rounded size,
        copy, free.  M_ZERO is passed through (Bug B); Bug A (zoneindex on a size past the
        zone limit panics) only with realloc_bug=True."""
        if addr is None or addr == 0 or addr == self.zero_length_ptr:
            return self.malloc(size, mtype, flags, cpu)
        if self.live.get(addr) is not mtype:
            return self.free(addr, mtype, cpu)      # raises the right BadFree
        if size == 0:
            self.free(addr, mtype, cpu)
            return None
        npages = self.large.get(addr)
        if npages is not None:
            old = npages * self.page_size
            if old == (size + self.page_mask) & ~self.page_mask:
                return addr
            want = size
        else:
            old = self.zones[addr & self.base_mask].chunk
            if size < self.zone_limit or self.options["realloc_bug"]:
                _, want = zoneindex(size)
                if want == old:
                    return addr
            else:
                want = size
        new = self.malloc(want, mtype, flags, cpu)
        if new is not None:
            self.vm.copy(new, addr, min(want, old))
            self.free(addr, mtype, cpu)
        return new

    def usable_size(self, addr) -> int:
        if addr == self.zero_length_ptr:
            return 0
        if addr not in self.live:
            raise bad_free(self, addr, None, self.live)
        npages = self.large.get(addr)
        if npages is not None:
            return npages * self.page_size
        return self.zones[addr & self.base_mask].chunk

    def was_chunk(self, addr: int) -> bool:
        z = self.zones.get(addr & self.base_mask) if isinstance(addr, int) else None
        if z is None or z.magic != ZALLOC_SLAB_MAGIC:
            return False
        off = first_offset(z.chunk, self.header)
        return addr < z.base + z.ualloc and (addr - z.base - off) % z.chunk == 0 and addr >= z.base + off

    # --- reports ------------------------------------------------------------------------------
    def classes(self) -> list:
        rows = []
        for zi, chunk in enumerate(CHUNK_SIZES):
            zones = [z for z in self.zones.values() if z.magic == ZALLOC_SLAB_MAGIC and z.zi == zi]
            free = sum(z.nfree + len(z.rchunks) for z in zones)
            nmax = zone_nmax(self.zone_size, chunk, self.header)
            rows.append({"zone": zi, "size": chunk, "objs_per_slab": nmax, "slab_bytes": self.zone_size,
                         "first_offset": first_offset(chunk, self.header),
                         "inuse": sum(z.nmax for z in zones) - free, "free": free, "slabs": len(zones)})
        return rows

    def extra_stats(self) -> dict:
        return {"slab": {
            "zone_size": self.zone_size, "zone_limit": self.zone_limit, "header_bytes": self.header,
            "free_zones_per_cpu": [len(g.free_zones) for g in self.gd],
            "large_live": len(self.large), "large_pages": sum(self.large.values()),
            "kmem_slab_frees": self.kmem_slab_frees, "remote_free": self.options["remote_free"],
        }}

    def info_tables(self) -> list:
        zones = [{"zone": r["zone"], "chunk": r["size"], "NMax": r["objs_per_slab"], "first off": r["first_offset"],
                  "zones": r["slabs"], "used": r["inuse"], "free": r["free"]} for r in self.classes()]
        types = [{"type": n, **self.kernel.type_counters(t)} for n, t in sorted(self.kernel.types.items())]
        return [(f"slab zones (ZoneSize {self.zone_size // 1024}K, header {self.header} bytes, "
                 f"zone limit {self.zone_limit})", zones), ("malloc types", types)]


@hookimpl
def kalloc_backends():
    return [SlabBackend]
