"""``bump``: the smallest complete backend, a reference for backend authors.

Not a historical allocator: a lower bound.  Memory comes from the kernel map one
``arena`` at a time (wired pages, as kmem_alloc gives them) and is handed out by
bumping a pointer, 16-byte aligned; free only does the accounting, memory is never
reused.  So its footprint only grows: compare any real allocator's footprint with it.
free(NULL) does nothing, as free(3) and FreeBSD's free(9) do.
The size of every allocation ever made stays recorded, which is how a double free is
told from a wild one (``was_chunk``).

::

    arena (64 KiB, pages mapped on demand)
    | a0 | a1 |  a2  | a3 |...... never-used ......|
                              ^ next

One global lock around everything (counted in ``lock_acquires``), like kmem_map.
docs/backends.md walks through this file.
"""

from __future__ import annotations

from kalloc.backends.base import Backend, Option, bad_free, check_args
from kalloc.errors import KernelPanic
from kalloc.flags import FLAG_INT, MAY_FAIL, NOWAIT, ZERO, MallocFlags
from kalloc.hookspecs import hookimpl
from kalloc.machine import VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM

ALIGN = 16


class BumpBackend(Backend):
    NAME = "bump"
    DESCRIPTION = "reference bump-pointer allocator: never reuses memory (a lower bound)"
    OPTIONS = {"arena": Option(65536, "bytes of kernel VA taken at a time", maximum=1 << 40)}

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        self.live = {}          # addr -> mtype, the allocations not freed yet
        self.sizes = {}         # addr -> bytes, of every allocation ever made
        self.next = self.end = 0
        self.ncpus = self.machine.ncpus
        self.page_size = self.machine.arch.page_size

    def default_type_limit(self) -> int:
        return self.machine.physmem // 10

    def malloc(self, size, mtype, flags=2, cpu=0):
        f = FLAG_INT.get(flags, -1)
        if (f < 0 or size.__class__ is not int or size < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus
                or flags.__class__ is not int and flags.__class__ is not MallocFlags):
            size, f = check_args(size, flags, cpu, self.ncpus)
        if getattr(mtype, "_k", None) is not self.kernel:
            self.kernel.bind_type(mtype)
        self.lock_acquires += 1
        mtype.calls += 1
        if mtype.memuse >= mtype.limit:
            if f & MAY_FAIL:
                return None
            raise KernelPanic(f"{mtype.name}: malloc limit exceeded")
        n = max(ALIGN, (size + ALIGN - 1) & ~(ALIGN - 1))
        if self.next + n > self.end and not self._grow(n, f):
            return None
        addr = self.next
        self.next += n
        self.cold_allocs += 1                    # never reused: every allocation is cold
        self.live[addr] = mtype
        self.sizes[addr] = n
        if f & ZERO:
            self.vm.zero(addr, n)
        mtype.inuse += 1
        mtype.memuse += n
        if mtype.memuse > mtype.maxused:
            mtype.maxused = mtype.memuse
        return addr

    def _grow(self, n: int, f: int) -> bool:
        ps = self.page_size
        length = max(self.options["arena"], (n + ps - 1) // ps * ps)
        va = self.vm.kernel_map.findspace(length, ps)
        pclass = VM_ALLOC_INTERRUPT if f & NOWAIT else VM_ALLOC_SYSTEM
        if va is None or not self.vm.map_pages(va, length // ps, pclass, va >> 12):
            if va is not None:
                self.vm.kernel_map.remove(va, length)
            if f & MAY_FAIL:
                return False
            raise KernelPanic(f"bump: out of memory allocating {n} bytes")
        self.next, self.end = va, va + length
        return True

    def free(self, addr, mtype, cpu=0):
        t = self.live.get(addr)
        if (t is None or t is not mtype or addr.__class__ is not int or cpu.__class__ is not int
                or not 0 <= cpu < self.ncpus):
            check_args(0, 2, cpu, self.ncpus, "free")       # a bad CPU, else NULL, else a bad free
            if addr is None or (addr.__class__ is int and addr == 0):
                return                                      # free(NULL) does nothing, as free(3)
            raise bad_free(self, addr, mtype, self.live)
        if mtype._k is not self.kernel:
            self.kernel.bind_type(mtype)
        del self.live[addr]
        self.lock_acquires += 1
        mtype.inuse -= 1
        mtype.memuse -= self.sizes[addr]

    def realloc(self, addr, size, mtype, flags=2, cpu=0):
        size, f = self._realloc_args(size, flags, cpu)
        if addr is None or (addr.__class__ is int and addr == 0):
            return self.malloc(size, mtype, f, cpu)
        self._realloc_owned(addr, mtype)
        return self._realloc_move(addr, self.sizes[addr], size, mtype, f, cpu)

    def usable_size(self, addr) -> int:
        if addr.__class__ is not int or addr not in self.live:
            raise bad_free(self, addr, None, self.live, "usable_size")
        return self.sizes[addr]

    def was_chunk(self, addr) -> bool:
        return addr in self.sizes and addr not in self.live

    def classes(self) -> list:
        return []


@hookimpl
def kalloc_backends():
    return [BumpBackend]
