"""``firstfit``: a sequential-fit kernel allocator, as a third-party kalloc backend.

The design Bonwick (1994) measured as SunOS 4.1.3's kernel allocator, about six times
slower than a slab: one address-ordered list of free extents under one lock; malloc takes
the first extent that fits and splits it, free puts the block back and merges it with its
neighbours.  Memory comes from the kernel map 64 KiB at a time and is never returned.

    arena:  [used][ free ][used][used][    free    ][used] ...
                   ^ first extent >= the request wins

Sizes are rounded to 16 bytes, so 16-byte alignment is all it promises.  Every address
ever handed out is remembered, so that a free of one that is free now is told apart as a
double free (``was_chunk``).  free(NULL) does nothing, as free(3).
"""

from bisect import bisect_left, insort

from kalloc import KernelPanic, hookimpl
from kalloc.backends.base import Backend, Option, bad_free, check_args
from kalloc.flags import FLAG_INT, MAY_FAIL, NOWAIT, WAITOK, ZERO
from kalloc.machine import VM_ALLOC_INTERRUPT, VM_ALLOC_SYSTEM

ALIGN = 16


class FirstFit(Backend):
    NAME = "firstfit"
    DESCRIPTION = "example third-party backend: locked first-fit over 64 KiB arenas"
    OPTIONS = {"arena": Option(65536, "bytes of kernel VA taken at a time")}

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        self.holes = []          # sorted [start, end] free extents
        self.live = {}           # addr -> (mtype, size)
        self.starts = set()      # every address ever handed out
        self.ncpus = self.machine.ncpus

    def default_type_limit(self):
        return self.machine.physmem // 10

    def malloc(self, size, mtype, flags=WAITOK, cpu=0):
        f = FLAG_INT.get(flags, -1)
        if f < 0 or size.__class__ is not int or size < 0 or cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            size, f = check_args(size, flags, cpu, self.ncpus)
        if getattr(mtype, "_k", None) is not self.kernel:
            self.kernel.bind_type(mtype)
        self.lock_acquires += 1
        mtype.calls += 1
        if mtype.memuse >= mtype.limit:
            if f & MAY_FAIL:
                return None
            raise KernelPanic(f"{mtype.name}: malloc limit exceeded")
        n = max(ALIGN, -(-size // ALIGN) * ALIGN)
        addr = self._fit(n)
        if addr is None:
            if not self._grow(n, f):
                return None
            addr = self._fit(n)
        self.live[addr] = (mtype, n)
        self.starts.add(addr)
        if f & ZERO:
            self.vm.zero(addr, n)
        mtype.inuse += 1
        mtype.memuse += n
        mtype.maxused = max(mtype.maxused, mtype.memuse)
        return addr

    def _fit(self, n):
        for i, h in enumerate(self.holes):
            if h[1] - h[0] >= n:
                addr = h[0]
                if h[1] - h[0] == n:
                    del self.holes[i]
                else:
                    h[0] += n
                return addr
        return None

    def _grow(self, n, f):
        ps = self.machine.arch.page_size
        length = max(self.options["arena"], -(-n // ps) * ps)
        va = self.vm.kernel_map.findspace(length, ps)
        pclass = VM_ALLOC_INTERRUPT if f & NOWAIT else VM_ALLOC_SYSTEM
        if va is None or not self.vm.map_pages(va, length // ps, pclass, va // ps):
            if va is not None:
                self.vm.kernel_map.remove(va, length)
            if f & MAY_FAIL:
                return False
            raise KernelPanic(f"firstfit: out of memory for {n} bytes")
        self._insert(va, va + length)
        return True

    def _insert(self, start, end):
        holes = self.holes
        i = bisect_left(holes, [start, end])
        if i < len(holes) and holes[i][0] == end:          # merge with the next extent
            holes[i][0] = start
            end = holes[i][1]
            del holes[i]
        if i and holes[i - 1][1] == start:                   # and with the previous one
            holes[i - 1][1] = end
        else:
            insort(holes, [start, end])

    def free(self, addr, mtype, cpu=0):
        rec = self.live.get(addr)
        if (rec is None or rec[0] is not mtype or addr.__class__ is not int
                or cpu.__class__ is not int or not 0 <= cpu < self.ncpus):
            check_args(0, WAITOK, cpu, self.ncpus, "free")     # a bad CPU first
            if addr is None or addr.__class__ is int and addr == 0:
                return                                         # free(NULL)
            raise bad_free(self, addr, mtype, self._types())
        if mtype._k is not self.kernel:
            self.kernel.bind_type(mtype)
        del self.live[addr]
        self.lock_acquires += 1
        mtype.inuse -= 1
        mtype.memuse -= rec[1]
        self._insert(addr, addr + rec[1])

    def realloc(self, addr, size, mtype, flags=WAITOK, cpu=0):
        size, f = check_args(size, flags, cpu, self.ncpus, "realloc")   # not a hot path: always checked
        if addr is None or addr.__class__ is int and addr == 0:
            return self.malloc(size, mtype, f, cpu)
        rec = self.live.get(addr) if addr.__class__ is int else None
        if rec is None or rec[0] is not mtype:
            raise bad_free(self, addr, mtype, self._types(), "realloc")
        old = rec[1]
        if old >= size > old // 2:
            return addr
        new = self.malloc(size, mtype, f, cpu)
        if new is not None:
            self.vm.copy(new, addr, min(old, size))
            self.free(addr, mtype, cpu)
        return new

    def usable_size(self, addr):
        rec = self.live.get(addr) if addr.__class__ is int else None
        if rec is None:
            raise bad_free(self, addr, None, self._types(), "usable_size")
        return rec[1]

    def was_chunk(self, addr):
        return addr in self.starts and addr not in self.live

    def _types(self):
        """addr -> malloc type of the live allocations, as bad_free wants them."""
        return {a: r[0] for a, r in self.live.items()}

    def classes(self):
        return []


@hookimpl
def kalloc_backends():
    return [FirstFit]
