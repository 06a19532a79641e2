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
* the state machine of kalloc.conformance (no overlap, data integrity, accounting);
* object caches (kalloc.cache): objects of the size, distinct and writable, M_ZERO, the
  constructor, the rows of ``stats()["caches"]``, destroy's panic with live objects, and
  misuse (double free, another cache's object, a malloc'd block, a destroyed cache).
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import kalloc
from kalloc import M_NOWAIT, M_NULLOK, M_WAITOK, M_ZERO, MallocType
from kalloc.cache import ROW_KEYS
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


def test_cache_contract(kalloc_backend, ncpus):
    k = kalloc.boot(kalloc_backend, ncpus=ncpus)
    made = []
    c = k.cache_create("conf_obj", 200, ctor=lambda kern, va: made.append(va))
    objs = [k.cache_alloc(c, M_WAITOK, i % ncpus) for i in range(50)]
    assert len(set(objs)) == 50 and set(objs) <= set(made)
    spans = sorted((a, a + 200) for a in objs)
    assert all(e <= b for (_, e), (b, _) in zip(spans, spans[1:])), "objects overlap"
    for a in objs:
        k.write(a, b"\x5a" * 200)
    for i, a in enumerate(objs):
        k.cache_free(c, a, (i + 1) % ncpus)
    z = k.cache_alloc(c, M_WAITOK | M_ZERO)
    assert k.read(z, 200) == bytes(200)
    (row,) = k.stats()["caches"]
    assert set(ROW_KEYS) <= set(row) and row["name"] == "conf_obj" and row["object_size"] == 200
    assert row["slab_size"] >= 200 and row["active_objs"] >= 1
    with pytest.raises(kalloc.KernelPanic, match="still has objects"):
        k.cache_destroy(c)
    k.cache_free(c, z)
    k.cache_destroy(c)
    assert k.stats()["caches"] == []
    with pytest.raises(kalloc.KernelPanic, match="destroyed"):
        k.cache_alloc(c)


def test_cache_misuse(kalloc_backend):
    k, t = kalloc.boot(kalloc_backend, ncpus=2), MallocType("conf")
    a, b = k.cache_create("conf_a", 64), k.cache_create("conf_b", 64)
    x, y, m = k.cache_alloc(a), k.cache_alloc(b), k.malloc(64, t)
    with pytest.raises(kalloc.WrongType, match="cache 'conf_b'"):
        k.cache_free(a, y)
    with pytest.raises(kalloc.WrongType, match="malloc"):
        k.cache_free(a, m)
    with pytest.raises(kalloc.WildFree):
        k.cache_free(a, 12345)
    with pytest.raises(kalloc.WildFree):
        k.cache_free(a, float(x))
    with pytest.raises(ValueError):
        k.cache_free(a, x, 7)
    k.cache_free(a, x)
    with pytest.raises(kalloc.DoubleFree):
        k.cache_free(a, x)
    with pytest.raises(ValueError):
        k.cache_create("conf_a", 64)
    for bad in ({"size": 0}, {"align": 3}, {"flags": 1 << 40}, {"size": 1 << 30}):
        with pytest.raises(ValueError):
            k.cache_create("conf_c", **{"size": 64, **bad})
    with pytest.raises(TypeError):
        k.cache_create("conf_c", 64.0)
    with pytest.raises(TypeError):
        k.cache_alloc("conf_a")
    k.cache_free(b, y)
    k.free(m, t)
    assert "conf_c" not in k.caches and t.inuse == 0
