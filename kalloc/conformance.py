"""The conformance machine: one hypothesis state machine every backend must pass.

Random malloc/free/realloc/write/read on random CPUs, checking after every step:

* no two live allocations overlap (each owns [addr, addr + usable_size));
* ``usable_size(addr) >= size`` and power-of-two sizes up to the page size that the
  backend declares naturally aligned (``ALIGNS_POWERS_OF_TWO``) are aligned, from malloc
  and from a realloc that moves the block (one that keeps it in place keeps its address,
  as Linux's krealloc does while ksize() covers the new size);
* M_ZERO memory reads back as zeros;
* data written into a live allocation is read back intact until it is freed
  (realloc keeps the first min(old, new) requested bytes);
* accounting balances: for each type, ``memuse`` is the sum of usable sizes of its live
  allocations and ``inuse`` their count (size-0 allocations that use no memory count
  for neither), and both reach zero when everything is freed.  A backend whose usable
  size is less than what it holds (the debug wrapper's redzones) says what it holds with
  ``charged_size(addr)``, and that is summed instead.

Use it from a test module::

    from kalloc.conformance import machine_for
    TestSlab = machine_for("slab", ncpus=4).TestCase

(docs/backends.md shows how a third-party backend runs it.)
"""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, invariant, multiple,
                                 precondition, rule)

import kalloc
from kalloc.flags import WAITOK, ZERO

SIZES = st.one_of(st.integers(0, 300), st.sampled_from([8, 16, 64, 128, 512, 1024, 2048, 4096, 8192]),
                  st.integers(301, 20000))


def machine_for(backend: str, ncpus: int = 2, physmem: str = "64M", **options):
    """A RuleBasedStateMachine class for one backend configuration."""

    class AllocatorMachine(RuleBasedStateMachine):
        allocs = Bundle("allocs")

        def __init__(self):
            super().__init__()
            self.k = kalloc.boot(backend, ncpus=ncpus, physmem=physmem, **options)
            self.types = [self.k.malloc_type(n) for n in ("devbuf", "temp", "mbuf")]
            # what the kernel itself holds from boot (kmem_map: 4.8's mclrefcnt, type mbuf)
            self.at_boot = {t: self._held(t) for t in self.types}
            self.live: dict = {}   # serial -> [addr, size, type, data]
            self.serial = 0
            self.ps = self.k.machine.arch.page_size

        def _check_new(self, addr: int, size: int, moved: bool = True) -> None:
            k = self.k
            usable = k.usable_size(addr)
            assert usable >= size, f"usable_size {usable} < requested {size}"
            if usable:
                for a, _, _, _ in self.live.values():
                    u = k.usable_size(a)
                    assert not (u and a < addr + usable and addr < a + u), \
                        f"{addr:#x}+{usable} overlaps live {a:#x}+{u}"
            if moved and size and size & (size - 1) == 0 and size <= self.ps and getattr(
                    k.backend, "ALIGNS_POWERS_OF_TWO", False):
                assert addr % size == 0, f"power-of-two size {size} at unaligned {addr:#x}"

        @rule(target=allocs, size=SIZES, t=st.integers(0, 2), zero=st.booleans(),
              cpu=st.integers(0, ncpus - 1), fill=st.integers(1, 255))
        def malloc(self, size, t, zero, cpu, fill):
            addr = self.k.malloc(size, self.types[t], WAITOK | (ZERO if zero else 0), cpu)
            assert addr is not None, "M_WAITOK malloc returned NULL"
            self._check_new(addr, size)
            if zero and size:
                assert self.k.read(addr, size) == bytes(size), "M_ZERO memory is not zero"
            data = bytes([fill]) * min(size, 64)
            if data:
                self.k.write(addr, data)
            self.serial += 1
            self.live[self.serial] = [addr, size, self.types[t], data]
            return self.serial

        @rule(s=consumes(allocs), cpu=st.integers(0, ncpus - 1))
        def free(self, s, cpu):
            addr, size, t, data = self.live.pop(s)
            assert self.k.read(addr, len(data)) == data, f"live data at {addr:#x} was corrupted"
            self.k.free(addr, t, cpu)

        @rule(target=allocs, s=consumes(allocs), size=SIZES, cpu=st.integers(0, ncpus - 1))
        def realloc(self, s, size, cpu):
            addr, old, t, data = self.live.pop(s)
            new = self.k.realloc(addr, size, t, WAITOK, cpu)
            if size == 0 and new is None:
                return multiple()  # realloc(p, 0) freed it: nothing left to track
            assert new is not None, "M_WAITOK realloc returned NULL"
            kept = data[:size]
            assert self.k.read(new, len(kept)) == kept, "realloc lost data"
            self._check_new(new, size, moved=new != addr)
            self.serial += 1
            self.live[self.serial] = [new, size, t, kept]
            return self.serial

        @precondition(lambda self: self.live)
        @rule(cpu=st.integers(0, ncpus - 1))
        def scribble(self, cpu):
            s = max(self.live)
            addr, size, t, data = self.live[s]
            if size:
                new = bytes([(data[:1] or b"\0")[0] ^ 0x5A]) * min(size, 64)
                self.k.write(addr, new)
                self.live[s][3] = new

        def _held(self, t) -> tuple[int, int]:
            """The type's inuse and memuse now (the types come from k.malloc_type: bound)."""
            c = self.k.type_counters(t)
            return c["inuse"], c["memuse"]

        @invariant()
        def accounting_balances(self):
            held = getattr(self.k.backend, "charged_size", self.k.usable_size)
            for t in self.types:
                mine = [held(a) for a, _, tt, _ in self.live.values() if tt is t]
                mine = [n for n in mine if n]
                inuse, memuse = self._held(t)
                inuse0, memuse0 = self.at_boot[t]
                assert inuse - inuse0 == len(mine), f"{t.name}: inuse {inuse} != {inuse0} at boot + {len(mine)} live"
                assert memuse - memuse0 == sum(mine), f"{t.name}: memuse off"

        def teardown(self):
            for addr, size, t, data in self.live.values():
                assert self.k.read(addr, len(data)) == data
                self.k.free(addr, t, 0)
            for t in self.types:
                assert self._held(t) == self.at_boot[t], f"{t.name} did not balance: {self._held(t)}"

    AllocatorMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None,
                                                   database=None)   # no .hypothesis/ in the user's directory
    return AllocatorMachine
