"""FreeBSD 4 kernel API names on top of any kalloc backend: MALLOC_DEFINE, MALLOC/FREE,
malloc/free/realloc/reallocf with the 4.8 flag values, zinit/zalloc/zfree, contigmalloc.

So a driver model can be written as the 2003 source was::

    M_AHC = MALLOC_DEFINE("ahc", "ahc driver")
    bsd = FreeBSD4(kalloc.boot("kmem_map"))
    scb = bsd.MALLOC(sizeof_scb, M_AHC, M_NOWAIT)      # the macro, returning the pointer
    bsd.FREE(scb, M_AHC)

Flag values are FreeBSD 4.8's sys/malloc.h 1.48.2.2, which differ from the DragonFly 2003
values kalloc uses internally (``kalloc.flags``); ``to_kalloc_flags`` translates:

    4.8:    M_WAITOK 0x0  M_NOWAIT 0x1  M_USE_RESERVE 0x2  M_ASLEEP 0x4  M_ZERO 0x8
    kalloc: M_NOWAIT 0x1  M_WAITOK 0x2  M_ZERO 0x100  M_USE_RESERVE 0x200  M_NULLOK 0x400

M_ASLEEP (register an asynchronous sleep, then fail) has no kalloc counterpart: it is
treated as M_NOWAIT, which is what the caller observes (NULL at once).
"""

from __future__ import annotations

from kalloc import vm_zone
from kalloc.flags import NOWAIT, USE_RESERVE, WAITOK, ZERO
from kalloc.malloc import MallocType

M_WAITOK = 0x0000
M_NOWAIT = 0x0001
M_USE_RESERVE = 0x0002
M_ASLEEP = 0x0004
M_ZERO = 0x0008
M_MAGIC = 877983977


def to_kalloc_flags(flags: int) -> int:
    if isinstance(flags, bool) or not isinstance(flags, int) or flags & ~0xF:
        raise ValueError(f"FreeBSD 4 malloc flags: bad value {flags!r} (known bits 0x1-0x8)")
    out = NOWAIT if flags & (M_NOWAIT | M_ASLEEP) else WAITOK
    if flags & M_USE_RESERVE:
        out |= USE_RESERVE
    if flags & M_ZERO:
        out |= ZERO
    return out


def MALLOC_DEFINE(shortdesc: str, longdesc: str = "", limit: int | None = None) -> MallocType:
    """A malloc type (4.8 throws the long description away; kalloc keeps it)."""
    return MallocType(shortdesc, longdesc, limit)


M_DEVBUF = "devbuf"
M_TEMP = "temp"
M_CACHE = "cache"


class FreeBSD4:
    """FreeBSD 4 kernel memory calls on one kalloc kernel."""

    def __init__(self, kernel, cpu: int = 0):
        self.k = kernel
        self.cpu = cpu

    def _type(self, mtype):
        return self.k.malloc_type(mtype) if isinstance(mtype, str) else mtype

    def malloc(self, size, mtype, flags=M_WAITOK):
        return self.k.malloc(size, self._type(mtype), to_kalloc_flags(flags), self.cpu)

    def free(self, addr, mtype) -> None:
        if addr:
            self.k.free(addr, self._type(mtype), self.cpu)

    def realloc(self, addr, size, mtype, flags=M_WAITOK):
        return self.k.realloc(addr, size, self._type(mtype), to_kalloc_flags(flags), self.cpu)

    def reallocf(self, addr, size, mtype, flags=M_WAITOK):
        """realloc that frees the old block when it fails (4.8 kern_malloc.c)."""
        new = self.realloc(addr, size, mtype, flags)
        if new is None and addr:
            self.free(addr, mtype)
        return new

    # The macros: MALLOC(space, cast, size, type, flags) assigns; here it returns the pointer.
    def MALLOC(self, size, mtype, flags=M_WAITOK):
        return self.malloc(size, mtype, flags)

    def FREE(self, addr, mtype) -> None:
        self.free(addr, mtype)

    def contigmalloc(self, size, mtype, flags, low, high, alignment, boundary):
        return self.k.contigmalloc(size, self._type(mtype), to_kalloc_flags(flags), low, high,
                                   alignment, boundary)

    def contigfree(self, addr, size, mtype) -> None:
        self.k.contigfree(addr, size, self._type(mtype))

    # vm_zone: the 4.8 type-stable zone allocator (kalloc.vm_zone)
    def zinit(self, name, size, nentries=0, flags=0, zalloc=1):
        return vm_zone.zinit(self.k, name, size, nentries, flags, zalloc)

    def zalloc(self, zone):
        return vm_zone.zalloc(zone)

    def zfree(self, zone, item) -> None:
        vm_zone.zfree(zone, item)
