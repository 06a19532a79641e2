"""What the slab C harnesses record, computed from a booted kalloc slab kernel.

Shared by tests/test_reference_slab_c.py and tests/test_reference_slab_later_c.py: zones are
numbered in creation order, every kmem_slab_alloc/kmem_slab_free is logged as the C logs it,
a pointer is named by (zone number, offset) or "L" (large), "ZLP" or None, and a CPU's
ZoneAry/FreeZones state is written as the harness dumps it.
"""


class SlabRig:
    """Wraps ``k.backend``'s kmem_slab_alloc/kmem_slab_free.  ``cur`` is the number of the op
    being run; ``events`` collects [op, "A", "zone", zone, flags], [op, "A", "large", nbytes,
    flags], [op, "F", "zone", zone, nbytes] and [op, "F", "large", nbytes]."""

    def __init__(self, k, zone_size: int):
        self.b = b = k.backend
        self.zs = zone_size
        self.zlp = b.zero_length_ptr
        self.ords, self.large, self.events = {}, set(), []
        self.cur = self.nzones = 0
        self._alloc, self._free = b._kmem_slab_alloc, b._kmem_slab_free
        b._kmem_slab_alloc, b._kmem_slab_free = self.kmem_alloc, self.kmem_free

    def kmem_alloc(self, nbytes, align, f, req):
        va = self._alloc(nbytes, align, f, req)
        if va is not None:
            if nbytes == self.zs and align == self.zs:
                self.ords[va] = self.nzones
                self.events.append([self.cur, "A", "zone", self.nzones, f])
                self.nzones += 1
            else:
                self.large.add(va)
                self.events.append([self.cur, "A", "large", nbytes, f])
        return va

    def kmem_free(self, va, nbytes):
        if va in self.large:
            self.large.discard(va)
            self.events.append([self.cur, "F", "large", nbytes])
        else:
            self.events.append([self.cur, "F", "zone", self.ords.pop(va), nbytes])
        return self._free(va, nbytes)

    def norm(self, p):
        if p is None or p == self.zlp:
            return None if p is None else "ZLP"
        if p in self.large:
            return "L"
        base = p & ~(self.zs - 1)
        return [self.ords[base], p - base]

    def zone_state(self, gd) -> dict:
        """One CPU's ZoneAry (head first: [zone, NFree, FirstFreePg, UAlloc, NMax, ChunkSize])
        and FreeZones ([count, zones head first])."""
        ords = self.ords
        return {"zone_ary": {str(zi): [[ords[z.base], z.nfree, z.first_free_pg, z.ualloc, z.nmax, z.chunk]
                                       for z in reversed(zl)] for zi, zl in enumerate(gd.zone_ary) if zl},
                "free_zones": [len(gd.free_zones), [ords[z.base] for z in reversed(gd.free_zones)]]}

    def returned(self, k, i: int, p, size: int, zero: bool, out: dict, handles: list) -> None:
        """Record what op ``i`` (a malloc, or a realloc) returned: its name in
        out["results"], for M_ZERO whether it read back zero in out["zeroed"]; then fill
        it as the harness does (reused memory is dirty) and keep it in ``handles``."""
        if zero and p not in (None, self.zlp):
            out["zeroed"].append([i, int(not any(k.read(p, size)))])
        out["results"].append(self.norm(p))
        if p not in (None, self.zlp):
            k.write(p, b"\xa5" * size)
        handles.append(p)

    def counts(self) -> tuple[int, int]:
        """(zones created, zones released) so far."""
        return (sum(1 for e in self.events if e[1:3] == ["A", "zone"]),
                sum(1 for e in self.events if e[1:3] == ["F", "zone"]))


def assert_results_match(seq: dict, got: dict) -> None:
    """The C's panic point, malloc/realloc results and M_ZERO checks, the first difference named."""
    assert got["panic_at"] == seq["panic_at"], (seq["c_panic"], got["panic_at"])
    n = len(seq["results"])
    for i, (w, g) in enumerate(zip(seq["results"], got["results"][:n])):
        assert g == w, f"result of m/r op #{i}: C {w}, kalloc {g}"
    assert len(got["results"]) == n
    assert got["zeroed"] == seq["zeroed"]
