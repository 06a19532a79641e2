"""Issue 20, the Python API: every bad argument is a clear exception of a documented type,
raised before any state changes, on every backend and in the debug wrapper."""

import pickle
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

import kalloc
from kalloc import errors
from kalloc.errors import BadFree, KallocError, PageFault
from kalloc.flags import M_WAITOK, M_ZERO
from kalloc.machine import ARCHES, DENSE_PAGES, PageStates

BACKENDS = ("slab", "kmem_map", "bump")
DEBUG = ({}, {"redzone": 16}, {"quarantine": 4}, {"invariants": True},
         {"redzone": 8, "quarantine": 2, "invariants": True})
SIZES = (64, 3000, 20000)                    # a small chunk, a bigger one, a large block


def _not_ints(addr: int) -> list:
    """Objects equal to ``addr`` (and hashing like it) that are not an int address."""
    return [float(addr), Fraction(addr), Decimal(addr), complex(addr), np.float64(addr)]


def _state(k) -> tuple:
    """What a refused call must leave as it was."""
    st = k.stats()
    live = getattr(k.backend, "live", None) or getattr(k.backend, "blocks", {})
    return (st["types"], st["pages"], st["vm"], st["counters"], st["classes"],
            sorted((type(a).__name__, a) for a in live), len(getattr(k.backend, "quarantine", ())))


def _boot(backend, opts):
    k = kalloc.boot(backend, ncpus=2, **opts)
    return k, k.malloc_type("drv")


@pytest.mark.parametrize("opts", DEBUG, ids=lambda o: ",".join(o) or "bare")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_non_int_address_equal_to_a_live_block_changes_nothing(backend, opts):
    k, t = _boot(backend, opts)
    blocks = [k.malloc(n, t, M_WAITOK) for n in SIZES]
    entry_points = (("free", lambda a: k.free(a, t)), ("realloc", lambda a: k.realloc(a, 100, t)),
                    ("realloc", lambda a: k.realloc(a, 0, t)), ("usable_size", k.usable_size))
    for addr in blocks:
        for bad in _not_ints(addr):
            for what, call in entry_points:
                before = _state(k)
                with pytest.raises(BadFree, match=f"{what}: address must be an int"):
                    call(bad)
                assert _state(k) == before, (what, type(bad))
    for addr in blocks:                          # the blocks are still live, and freed once
        k.free(addr, t)
    assert k.type_counters(t)["inuse"] == 0 or opts.get("quarantine")


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_and_write_take_int_addresses_and_bytes_like_data(backend):
    k, t = _boot(backend, {})
    va = k.malloc(64, t, M_WAITOK | M_ZERO)
    for data in (16, [1, 2], "text", None, 1.5):
        with pytest.raises(TypeError, match="write: data must be bytes-like"):
            k.write(va, data)
    assert k.read(va, 64) == bytes(64)
    for data in (b"ab", bytearray(b"ab"), memoryview(b"ab")):
        k.write(va, data)
        assert k.read(va, 2) == b"ab"
    for bad in (float(va), Decimal(va)):
        with pytest.raises(TypeError, match="address must be an int"):
            k.write(bad, b"x")
        with pytest.raises(TypeError, match="address must be an int"):
            k.read(bad, 1)
    with pytest.raises(TypeError, match="length must be an int"):
        k.read(va, 2.0)


BAD_FLAGS = (True, False, 2.0, Decimal(2), Fraction(2), np.int64(2), complex(2))


@pytest.mark.parametrize("opts", ({}, {"redzone": 16}), ids=("bare", "redzone"))
@pytest.mark.parametrize("backend", BACKENDS)
def test_flags_of_another_type_are_refused_even_when_they_hash_like_flags(backend, opts):
    k, t = _boot(backend, opts)
    va = k.malloc(64, t, M_WAITOK)
    for flags in BAD_FLAGS:
        before = _state(k)
        with pytest.raises(TypeError, match="malloc flags must be an int or MallocFlags"):
            k.malloc(64, t, flags)
        with pytest.raises(TypeError, match="malloc flags must be an int or MallocFlags"):
            k.realloc(va, 200, t, flags)
        assert _state(k) == before
    assert k.malloc(64, t, M_WAITOK | M_ZERO) and k.malloc(64, t, 0x102)   # MallocFlags, int


def test_contigmalloc_and_workload_ops_refuse_flags_of_another_type():
    from kalloc import workload
    k, t = _boot("slab", {})
    for flags in (True, 2.0):
        with pytest.raises(TypeError, match="malloc flags"):
            k.contigmalloc(4096, t, flags, 0, 1 << 24, 4096, 0)
        with pytest.raises(TypeError, match="malloc flags"):
            workload.malloc(64, "drv", flags)


@pytest.mark.parametrize("arch", ARCHES)
def test_physmem_above_the_arch_limit_is_a_value_error(arch):
    limit = ARCHES[arch].physmem_max
    for mem in (limit + 4096, 2 ** 70, "999999T"):
        with pytest.raises(ValueError, match=f"exceeds the {limit >> 30:,} GiB an {arch} kernel may have"):
            kalloc.boot("slab", physmem=mem, arch=arch)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_largest_legal_machine_boots_sparse_and_works(backend):
    """4 TiB of amd64: a billion page frames, kept in pieces made on first use."""
    k = kalloc.boot(backend, physmem=ARCHES["amd64"].physmem_max, arch="amd64", ncpus=2)
    state = k.machine.page_state
    assert isinstance(state, PageStates) and len(state) == 1 << 30
    t = k.malloc_type("drv")
    va = k.malloc(100_000, t, M_WAITOK | M_ZERO)
    assert k.read(va, 16) == bytes(16)
    k.free(va, t)
    assert len(state.pieces) < 64                # a few 64 KiB pieces, not 1 GiB
    low = k.contigmalloc(8192, t, M_WAITOK, 0, 1 << 24, 4096, 0)
    assert low is not None and k.vtophys(low) < 1 << 24


def test_page_states_read_like_the_bytearray_they_replace():
    n = DENSE_PAGES + 3 * PageStates.PIECE + 17
    sparse, dense = PageStates(n), bytearray(n)
    for pfn in (0, 5, PageStates.PIECE - 1, PageStates.PIECE, n - 1, n // 2):
        sparse[pfn] = dense[pfn] = 1
    sparse[5] = dense[5] = 0
    assert bytes(sparse) == bytes(dense) and len(sparse) == len(dense)
    for lo, hi in ((0, 10), (PageStates.PIECE - 2, PageStates.PIECE + 2), (n - 3, n + 5)):
        assert sparse[lo:hi] == bytes(dense[lo:hi])
        for v in (0, 1):
            assert sparse.find(v, lo, hi) == dense.find(v, lo, hi)
    assert sparse.find(1, 1) == dense.find(1, 1) and sparse.find(1, n // 2 + 1) == dense.find(1, n // 2 + 1)
    with pytest.raises(IndexError, match="out of range"):
        sparse[n] = 1


def _instances():
    """One instance of every kalloc exception, as the simulator makes them."""
    return [KallocError("x"), errors.KernelPanic("panic: x"), PageFault(0xC0001000, "read"),
            errors.BadFree("free: x", 0x10, "f.py:1"), errors.DoubleFree("free: d", 0x10),
            errors.WildFree("free: w", None), errors.WrongType("free: t", 0x10, "site"),
            errors.MemoryCorruption("m", 0x20, "s"), errors.Redzone("r", 0x20, "s"),
            errors.UseAfterFree("u", 0x20, "s"), errors.Deadlock("d", "vmwait"),
            errors.WorkloadError("workload 'w', thread 't' on cpu 0: free(0): handle 0 is not live")]


def test_every_kalloc_exception_class_has_an_instance_here():
    classes = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, KallocError)}
    assert classes == {type(e) for e in _instances()}


@pytest.mark.parametrize("exc", _instances(), ids=lambda e: type(e).__name__)
def test_every_kalloc_exception_pickles(exc):
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.args == exc.args
    assert vars(back) == vars(exc)


def test_a_raised_page_fault_crosses_a_process_boundary():
    k, _ = _boot("slab", {})
    with pytest.raises(PageFault) as info:
        k.read(0x1000, 4)
    back = pickle.loads(pickle.dumps(info.value))
    assert back.addr == 0x1000 and str(back) == str(info.value)


@pytest.mark.parametrize("rz", (1, 16, 100, 4096, 8191))
def test_redzones_do_not_move_a_working_request_into_the_one_chunk_zone_71(rz):
    """At ZoneSize 32K (64 MiB) zone 71 holds one chunk and panics (slab.md, section 2.4):
    every size the bare slab serves must still be served, in a loop of malloc, realloc, free."""
    bare, rzk = kalloc.boot("slab"), kalloc.boot("slab", redzone=rz)
    assert bare.backend.nmaxes[71] == 1
    tb, tr = bare.malloc_type("drv"), rzk.malloc_type("drv")
    for size in sorted({1, 100, 8192, 14337, 15329 - 2 * rz, 15328, 15329, 15359, 15360} - {0}):
        if size <= 0:
            continue
        for _ in range(3):                        # a second one would meet the full zone 71
            a, b = bare.malloc(size, tb), rzk.malloc(size, tr)
            assert (a is None) == (b is None)
            b = rzk.realloc(b, size - 1 or 1, tr)
            rzk.free(b, tr)
            bare.free(a, tb)


def test_redzones_keep_the_bare_panic_of_a_request_that_lands_in_zone_71():
    for k in (kalloc.boot("slab"), kalloc.boot("slab", redzone=16)):
        t = k.malloc_type("drv")
        k.malloc(15361, t)
        with pytest.raises(kalloc.KernelPanic, match="zone 71"):
            k.malloc(15361, t)


def test_an_int_subclass_equal_to_a_live_address_is_refused_and_changes_nothing():
    """numpy's integers and other int subclasses hash like the address: refused, the block kept."""
    class Addr(int):
        pass
    for backend in ("slab", "kmem_map"):
        k = kalloc.boot(backend, ncpus=2)
        t = kalloc.MallocType("sub")
        va = k.malloc(64, t)
        with pytest.raises(kalloc.errors.WildFree, match="address must be an int"):
            k.free(Addr(va), t)
        assert t.inuse == 1 and k.usable_size(va) == 64
        k.free(va, t)
        assert t.inuse == 0


@pytest.mark.parametrize("backend,option,value", [("slab", "redzone", 1 << 17), ("slab", "quarantine", 1 << 25),
                                                  ("slab", "zone_cache", 1 << 17), ("bump", "arena", 1 << 41)])
def test_integer_options_have_a_bound(backend, option, value):
    with pytest.raises(ValueError, match=f"option '{option}' .* at most"):
        kalloc.boot(backend, **{option: value})
