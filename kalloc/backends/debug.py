"""The debug wrapper: redzones, quarantine with poison, fault injection, allocation sites.

Any backend, built in or third-party, gets these by option; when none is set the wrapper
is not there at all (boot binds the bare backend), so the fast path pays nothing.
``invariants`` is the originals' own INVARIANTS and lives inside each backend; the wrapper
adds the one check both lacked, that M_ZERO memory really is zero.

Redzones (``redzone=N``, after FreeBSD's redzone(9))::

    inner chunk:  | N guard bytes | the caller's size bytes | guard ... to the end of the chunk |
                                  ^ the address malloc returns

Guard bytes are 0x42 ('B', as redzone(9) fills them).  free() checks both sides and panics
with the type, size, CPU and allocation site of the block on an underrun or overrun, so a
one-byte overrun past the *requested* size is caught even when the chunk has slack.  The
returned address is N bytes into a chunk of size + 2N, so a power-of-two size is not
naturally aligned (as with redzone(9)), and the wrapper does not declare
``ALIGNS_POWERS_OF_TWO``.  Size 0 is asked of the backend as 0: a pointer
it shares without memory (slab's ZERO_LENGTH_PTR, usable size 0) is returned as it is, and
a real chunk (kmem_map's 16 bytes) is returned at its start, every byte of it guard.  A
backend may place the padded request itself (``guarded_request(size, padded)``): slab
keeps guards from moving a request into its one-chunk zone 71 at ZoneSize 32K, which
panics where the bare request does not.

Quarantine (``quarantine=N``): a freed block is filled with 0x6b (SLUB's POISON_FREE) and
held in a FIFO of N blocks before the real free.  When it leaves, the poison is checked: a
changed byte is a use-after-free *write*, reported with the offset, the block's type,
size, allocation and free sites.  While it sits there, ``k.read`` of it is a use-after-free
*read*, and a second free of it is a double free naming both frees.  Its type counts it
as freed (inuse, and memuse by its usable size), so accounting and type limits are the
backend's own; only its memory stays held.

Fault injection (failslab): ``fail_probability`` (0..1, from the kernel's seeded RNG),
``fail_interval`` (every Nth eligible call), ``fail_times`` (at most that many; 0 = no
limit), ``fail_type`` (only that malloc type), ``fail_size_min``/``fail_size_max``.  Only
calls that may fail (M_NOWAIT or M_NULLOK) are failed, malloc and realloc to a non-zero
size; each is counted.

Valid calls get the backend's own answers: realloc is the backend's realloc of the block
with its guards (in place or moved, NULL after slab frees on size 0); free and usable_size
of NULL or of a shared zero-length pointer go to the backend untouched (the 2003 slab
panics on free(NULL), kmem_map ignores it), and realloc of one is a malloc.  A bad CPU is
refused before anything changes.  Any other address that is not a block is a bad free,
explained on the caller's addresses (a double free: a block freed since it was handed
out); an address that is not an int (a float equal to a block's) is one, before anything
changes.  A block that realloc moves is freed by the backend at once, not quarantined.

Allocation sites: the caller's file and line (the first frame outside kalloc), or the
harness thread's name when a workload runs.
"""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path

from kalloc.backends.base import bad_free, check_args
from kalloc.cache import Cache
from kalloc.errors import BadFree, DoubleFree, KernelPanic, Redzone, UseAfterFree
from kalloc.flags import MAY_FAIL, ZERO

REDZONE_BYTE = 0x42
POISON_FREE = 0x6B
DEBUG_OPTIONS = ("redzone", "quarantine", "fail_probability", "fail_interval", "fail_times",
                 "fail_type", "fail_size_min", "fail_size_max", "invariants")
_KALLOC_DIR = str(Path(__file__).resolve().parents[1])


def wanted(options: dict) -> bool:
    """Whether any option needs the wrapper."""
    return bool(options["redzone"] or options["quarantine"] or options["fail_probability"]
                or options["fail_interval"] or options["invariants"])


def caller_site() -> str:
    """file:line of the first frame outside kalloc (the driver model's call)."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_KALLOC_DIR):
        f = f.f_back
    return "?" if f is None else f"{Path(f.f_code.co_filename).name}:{f.f_lineno} in {f.f_code.co_name}"


class Block:
    __slots__ = ("user", "base", "size", "mtype", "cpu", "site", "free_site", "free_cpu")

    def __init__(self, user, base, size, mtype, cpu, site):
        self.user, self.base, self.size, self.mtype, self.cpu, self.site = user, base, size, mtype, cpu, site
        self.free_site = self.free_cpu = None

    def describe(self) -> str:
        return (f"{self.size}-byte block at {self.user:#x} of type '{self.mtype.name}' "
                f"allocated on cpu {self.cpu} at {self.site}")


class DebugBackend:
    """Wraps a backend instance; everything it does not override is the inner backend's."""

    def __init__(self, inner, options: dict):
        self.inner = inner
        self.kernel = inner.kernel
        self.NAME = inner.NAME
        self.o = options
        self.rz = options["redzone"]
        self.blocks: dict = {}             # user address -> Block
        self.freed: set = set()            # user addresses freed since handed out (double frees)
        self.quarantine: deque = deque()
        self.quarantined: dict = {}        # user address -> Block
        self.injected_failures = 0
        self.eligible = 0
        self.site_hint = None              # set by the harness: the running thread's name
        self.ncpus = inner.machine.ncpus
        self._fit = getattr(inner, "guarded_request", None) if self.rz else None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def ALIGNS_POWERS_OF_TWO(self) -> bool:  # noqa: N802 -- the backends' class attribute
        """Not with redzones: the caller's address is N bytes into a chunk of size + 2N."""
        return not self.rz and getattr(self.inner, "ALIGNS_POWERS_OF_TWO", False)

    # --- malloc ----------------------------------------------------------------------------
    def _inject(self, size: int, mtype, f: int) -> bool:
        o = self.o
        if not f & MAY_FAIL or (o["fail_type"] and mtype.name != o["fail_type"]):
            return False
        if size < o["fail_size_min"] or (o["fail_size_max"] and size > o["fail_size_max"]):
            return False
        if o["fail_times"] and self.injected_failures >= o["fail_times"]:
            return False
        self.eligible += 1
        hit = ((o["fail_interval"] and self.eligible % o["fail_interval"] == 0)
               or (o["fail_probability"] and self.kernel.rng.random() < o["fail_probability"]))
        if hit:
            self.injected_failures += 1
        return bool(hit)

    def malloc(self, size, mtype, flags=2, cpu=0):
        size, f = check_args(size, flags, cpu, self.ncpus)
        if getattr(mtype, "_k", None) is not self.kernel:
            self.kernel.bind_type(mtype)
        if self._inject(size, mtype, f):
            return None
        base = self.inner.malloc(self._padded(size), mtype, f, cpu)
        if base is None:
            return None
        user = self._track(base, size, mtype, cpu)
        if f & ZERO and self.o["invariants"] and size:
            dirty = sum(1 for b in self.kernel.vm.read(user, size) if b)
            if dirty:
                raise KernelPanic(f"malloc: M_ZERO memory is not zero: {dirty} of {size} bytes at "
                                  f"{user:#x} (type '{mtype.name}', cpu {cpu}, {self.blocks[user].site})")
        return user

    def cache_alloc(self, cache, flags=2, cpu=0):
        """failslab covers caches too (should_failslab in slab_pre_alloc_hook): a call that
        may fail fails as a malloc would; redzones and quarantine are malloc's only."""
        _, f = check_args(0, flags, cpu, self.ncpus, "cache_alloc")
        if cache.__class__ is Cache and self._inject(cache.object_size, cache.mtype, f):
            return None
        return self.inner.cache_alloc(cache, flags, cpu)

    def _padded(self, size: int) -> int:
        """What the backend is asked for ``size`` bytes: with their guards, in a request
        the backend chooses (``guarded_request``, if it has one) so that the guards do
        not move it somewhere the bare request would not fail; 0 for 0."""
        if not size:
            return 0
        padded = size + 2 * self.rz
        return padded if self._fit is None else self._fit(size, padded)

    def _track(self, base: int, size: int, mtype, cpu: int) -> int:
        """The caller's address for what the backend gave a request of ``size`` bytes: a
        block behind N guard bytes, or for size 0 the chunk itself, all guard; a pointer the
        backend shares for size 0 (slab's ZERO_LENGTH_PTR: usable size 0) is not a block."""
        if not size and not self.inner.usable_size(base):
            return base
        user = base + self.rz if size else base
        if self.rz:
            end = base + self.inner.usable_size(base)
            self.kernel.vm.write(base, bytes([REDZONE_BYTE]) * (user - base))
            self.kernel.vm.write(user + size, bytes([REDZONE_BYTE]) * (end - user - size))
        self.blocks[user] = Block(user, base, size, mtype, cpu, self.site_hint or caller_site())
        self.freed.discard(user)
        return user

    # --- free ------------------------------------------------------------------------------
    def free(self, addr, mtype, cpu=0):
        b = self.blocks.get(addr)
        if (b is None or b.mtype is not mtype or addr.__class__ is not int or cpu.__class__ is not int
                or not 0 <= cpu < self.ncpus):
            return self._free_unusual(addr, mtype, cpu)
        if self.rz:
            self._check_redzone(b, cpu)
        del self.blocks[addr]
        self.freed.add(addr)
        if not self.o["quarantine"]:
            self.inner.free(b.base, mtype, cpu)
            return
        b.free_site, b.free_cpu = self.site_hint or caller_site(), cpu
        if b.size:
            self.kernel.vm.write(addr, bytes([POISON_FREE]) * b.size)
        self._count(b, -1)
        self.quarantine.append(b)
        self.quarantined[addr] = b
        while len(self.quarantine) > self.o["quarantine"]:
            self._release(self.quarantine.popleft(), cpu)

    def _free_unusual(self, addr, mtype, cpu) -> None:
        """A bad CPU is refused before anything changes; NULL and a shared zero-length
        pointer get the backend's own answer; anything else is a bad free."""
        if cpu.__class__ is not int or not 0 <= cpu < self.ncpus:
            check_args(0, 2, cpu, self.ncpus, "free")
        if self._backends_own(addr):
            return self.inner.free(addr, mtype, cpu)
        raise self._bad_free(addr, mtype)

    def _backends_own(self, addr) -> bool:
        """NULL, or a pointer the backend hands out for size 0 without memory: not blocks of
        the wrapper, so free, realloc and usable_size leave them to the backend."""
        return addr is None or addr.__class__ is int and (addr == 0 or self._reserved(addr) == 0)

    def _reserved(self, addr):
        """The backend's usable size at ``addr``, None if nothing is allocated there."""
        try:
            return self.inner.usable_size(addr)
        except BadFree:
            return None

    def _bad_free(self, addr, mtype, what: str = "free") -> BadFree:
        """A second free of a quarantined block names both frees; the rest is base.bad_free
        on the caller's addresses (the blocks, ``usable_size`` and ``was_chunk`` here)."""
        q = self.quarantined.get(addr)
        if q is not None:
            return DoubleFree(f"{what}: double free of the {q.describe()}; first freed on cpu "
                              f"{q.free_cpu} at {q.free_site}", addr, q.site)
        return bad_free(self, addr, mtype, {u: bl.mtype for u, bl in self.blocks.items()}, what)

    def was_chunk(self, addr: int) -> bool:
        return addr in self.freed

    def _check_redzone(self, b: Block, cpu: int) -> None:
        vm = self.kernel.vm
        front = vm.read(b.base, b.user - b.base)
        end = b.base + self.inner.usable_size(b.base)
        back = vm.read(b.user + b.size, end - b.user - b.size)
        for what, data, start in (("underrun", front, b.base), ("overrun", back, b.user + b.size)):
            bad = [i for i, x in enumerate(data) if x != REDZONE_BYTE]
            if bad:
                off = start + bad[0] - b.user
                raise Redzone(f"redzone: {what} of the {b.describe()}: byte at offset {off} "
                              f"({start + bad[0]:#x}) was overwritten; {len(bad)} guard bytes changed; "
                              f"detected at free on cpu {cpu}", b.user, b.site)

    def _count(self, b: Block, n: int) -> None:
        """A quarantined block counts as freed in its type (inuse, memuse: its usable size),
        as without quarantine; it is counted back just before the backend frees it."""
        t = b.mtype
        if t._k is not self.kernel:
            self.kernel.bind_type(t)
        t.inuse += n
        t.memuse += n * self.inner.usable_size(b.base)

    def _release(self, b: Block, cpu: int) -> None:
        del self.quarantined[b.user]
        if b.size:
            data = self.kernel.vm.read(b.user, b.size)
            bad = [i for i, x in enumerate(data) if x != POISON_FREE]
            if bad:
                raise UseAfterFree(f"use-after-free: write to the freed {b.describe()}: byte at offset "
                                   f"{bad[0]} ({b.user + bad[0]:#x}) changed after it was freed on cpu "
                                   f"{b.free_cpu} at {b.free_site}", b.user, b.site)
        self._count(b, 1)
        self.inner.free(b.base, b.mtype, cpu)

    def read(self, va: int, n: int) -> bytes:
        """k.read with quarantine on: reading freed memory is reported."""
        for b in self.quarantined.values():
            if va < b.user + b.size and b.user < va + n:
                raise UseAfterFree(f"use-after-free: read of {n} bytes at {va:#x} touches the freed "
                                   f"{b.describe()}, freed on cpu {b.free_cpu} at {b.free_site}", va, b.site)
        return self.kernel.vm.read(va, n)

    # --- the rest of the interface ------------------------------------------------------
    def realloc(self, addr, size, mtype, flags=2, cpu=0):
        """The backend's own realloc of the block with its guards (size 0 passed on as 0), so
        it answers as without the wrapper: in place or moved, NULL after freeing (slab's size
        0) or keeping the block (a failure).  The guards are checked before, written after."""
        size, f = check_args(size, flags, cpu, self.ncpus, "realloc")
        b = self.blocks.get(addr) if addr.__class__ is int else None
        if b is None or b.mtype is not mtype:
            if self._backends_own(addr):
                return self.malloc(size, mtype, f, cpu)
            raise self._bad_free(addr, mtype, "realloc")
        if size and self._inject(size, mtype, f):
            return None
        if self.rz:
            self._check_redzone(b, cpu)
        base = self.inner.realloc(b.base, self._padded(size), mtype, f, cpu)
        if base is None and self._reserved(b.base) is not None:
            return None
        del self.blocks[addr]
        self.freed.add(addr)
        return None if base is None else self._track(base, size, mtype, cpu)

    def usable_size(self, addr) -> int:
        b = self.blocks.get(addr) if addr.__class__ is int else None
        if b is not None:
            return b.size if self.rz else self.inner.usable_size(b.base)
        if self._backends_own(addr):
            return self.inner.usable_size(addr)
        raise self._bad_free(addr, None, "usable_size")

    def charged_size(self, addr) -> int:
        """What the backend holds, and charges to the type, for the block at ``addr``: its
        chunk, guards included.  ``usable_size`` is what the caller may use: with redzones,
        the requested size (the conformance machine balances ``memuse`` against this)."""
        b = self.blocks.get(addr)
        return self.usable_size(addr) if b is None else self.inner.usable_size(b.base)

    def extra_stats(self) -> dict:
        return {**self.inner.extra_stats(),
                "debug": {"injected_failures": self.injected_failures, "quarantined": len(self.quarantine),
                          "redzone": self.rz}}

