"""The conformance battery, collected by ``pytest --kalloc-backend NAME`` (kalloc.pytest_plugin).

Each test takes the ``kalloc_backend`` parameter: the name of the backend under test.
What every backend must do, whatever its design:

* the API contract: malloc returns an int address (None only when the flags allow),
  usable_size covers the request, free returns the memory (the type's counters go back);
* flags: invalid combinations are refused with ValueError/TypeError; M_NOWAIT and M_NULLOK
  may give None, M_WAITOK never does (it panics, or sleeps: a Deadlock outside the harness);
* M_ZERO memory is zero, even when the chunk was used and dirtied before;
* bad input: negative or non-integer sizes, a CPU out of range, double, wild and
  interior frees, the wrong malloc type;
* the state machine of kalloc.conformance (no overlap, data integrity, accounting).
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import kalloc
from kalloc import M_NOWAIT, M_NULLOK, M_WAITOK, M_ZERO, MallocType
from kalloc.conformance import machine_for


@pytest.fixture
def ncpus(request):
    return request.config.getoption("kalloc_ncpus", 4)


def test_api_contract(kalloc_backend, ncpus):
    k = kalloc.boot(kalloc_backend, ncpus=ncpus)
    t = MallocType("conf")
    for cpu in range(ncpus):
        for size in (1, 8, 100, 1000, 4096, 5000, 20000, 100000):
            a = k.malloc(size, t, M_WAITOK, cpu)
            assert isinstance(a, int) and not isinstance(a, bool)
            assert k.usable_size(a) >= size
            k.write(a, b"\xa5" * size)
            assert k.read(a, size) == b"\xa5" * size
            assert t.inuse >= 1 and t.memuse >= size
            k.free(a, t, (cpu + 1) % ncpus)
    assert (t.inuse, t.memuse) == (0, 0)
    assert t.calls >= 8 * ncpus


def test_flag_validation(kalloc_backend):
    k, t = kalloc.boot(kalloc_backend), MallocType("conf")
    with pytest.raises(ValueError):
        k.malloc(8, t, M_WAITOK | M_NOWAIT)
    with pytest.raises(ValueError):
        k.malloc(8, t, 0x80000)
    with pytest.raises(TypeError):
        k.malloc(8, t, "M_WAITOK")
    assert t.inuse == 0


def test_limit_semantics(kalloc_backend):
    k = kalloc.boot(kalloc_backend)
    t = MallocType("tiny", limit=4096)
    ptrs = []
    while True:
        a = k.malloc(512, t, M_NOWAIT)
        if a is None:
            break
        ptrs.append(a)
        assert len(ptrs) < 100, "the type limit is never enforced"
    assert k.malloc(512, t, M_NULLOK) is None
    with pytest.raises((kalloc.KernelPanic, kalloc.Deadlock)):
        k.malloc(512, t, M_WAITOK)
    for a in ptrs:
        k.free(a, t)
    assert k.malloc(512, t, M_WAITOK) is not None


def test_mzero_even_after_reuse(kalloc_backend, ncpus):
    k, t = kalloc.boot(kalloc_backend, ncpus=ncpus), MallocType("conf")
    for size in (8, 64, 200, 3000, 9000, 30000):
        dirty = [k.malloc(size, t) for _ in range(8)]
        for a in dirty:
            k.write(a, b"\xff" * size)
        for a in dirty:
            k.free(a, t)
        clean = [k.malloc(size, t, M_WAITOK | M_ZERO) for _ in range(8)]
        for a in clean:
            assert k.read(a, size) == bytes(size), f"M_ZERO gave dirty memory for size {size}"
            k.free(a, t)


@pytest.mark.parametrize("size,exc", [(-1, ValueError), (1.5, TypeError), ("8", TypeError)])
def test_bad_sizes(kalloc_backend, size, exc):
    with pytest.raises(exc):
        kalloc.boot(kalloc_backend).malloc(size, MallocType("conf"))


def test_bad_cpu(kalloc_backend):
    k = kalloc.boot(kalloc_backend, ncpus=2)
    for cpu in (-1, 2, 1.0):
        with pytest.raises(ValueError):
            k.malloc(8, MallocType("conf"), M_WAITOK, cpu)


def test_bad_frees(kalloc_backend):
    k, t, u = kalloc.boot(kalloc_backend), MallocType("conf"), MallocType("other")
    a = k.malloc(100, t)
    with pytest.raises(kalloc.WrongType):
        k.free(a, u)
    with pytest.raises(kalloc.BadFree):
        k.free(a + 4, t)
    with pytest.raises(kalloc.BadFree):
        k.free(0x12340, t)
    k.free(a, t)
    with pytest.raises(kalloc.BadFree):
        k.free(a, t)
    assert (t.inuse, t.memuse) == (0, 0)


def test_state_machine(kalloc_backend, ncpus, request):
    examples = request.config.getoption("kalloc_examples", 100)
    # 128 MiB: at 64 MiB the 2003 slab's 32K zones hold one 16384-byte chunk and the original
    # corrupts itself on 15361-16383-byte requests (docs/research/slab.md 2.4; zone_limit="runtime")
    run_state_machine_as_test(machine_for(kalloc_backend, ncpus=ncpus, physmem="128M"),
                              settings=settings(max_examples=examples, stateful_step_count=50,
                                                deadline=None))
