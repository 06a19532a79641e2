"""The conformance battery, collected by ``pytest --kalloc-backend NAME`` (kalloc.pytest_plugin).

Each test takes the ``kalloc_backend`` parameter (the name of the backend under test) and
``kalloc_options`` (the backend options given with ``--kalloc-option``, passed to every
boot).  What every backend must do, whatever its design (docs/backends.md, "The contract"):

* the API contract: malloc returns an int address (None only when the flags allow),
  usable_size covers the request, free returns the memory (the type's counters go back);
* flags: invalid combinations are refused with ValueError/TypeError; M_NOWAIT and M_NULLOK
  may give None, M_WAITOK never does, not at a type limit nor when memory runs out (it
  panics, or sleeps: a Deadlock outside the harness);
* sleeping changes nothing: a kernel that raised Deadlock is in the state of a twin kernel
  that never made the call, and goes on exactly as the twin does;
* M_ZERO memory is zero, even when the chunk was used and dirtied before;
* bad input, refused before anything changes: negative or non-integer sizes, a CPU out of
  range (malloc, free, realloc), the wrong malloc type, interior and wild frees (WildFree),
  double frees (DoubleFree), usable_size of a block that is not live; free(NULL) returns
  having done nothing or panics as the original does, and raises nothing else;
* kernels share nothing: two kernels booted alike each have their own allocations;
* ``classes()`` rows carry the keys ``kalloc info`` and the records read;
* the state machine of kalloc.conformance (no overlap, data integrity, accounting);
* object caches (kalloc.cache): objects of the size, distinct and writable, M_ZERO, the
  constructor, the rows of ``stats()["caches"]``, destroy's panic with live objects, and
  misuse (double free, another cache's object, a malloc'd block, a destroyed cache).

Each test is a plain function of (backend name, options), so that kalloc's own tests can
run one on a deliberately broken backend and see it fail (tests/test_conformance_catches.py).
Deadlock checks compare twin kernels, which relies on determinism: the same boot and the
same calls give the same addresses (kalloc.malloc's contract).
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import kalloc
from kalloc import M_NOWAIT, M_NULLOK, M_WAITOK, M_ZERO, MallocType
from kalloc.cache import ROW_KEYS
from kalloc.conformance import machine_for

# The keys of a classes() row (docs/backends.md): kalloc info's table and the records' "classes".
CLASS_KEYS = ("size", "objs_per_slab", "slab_bytes", "first_offset", "inuse", "free", "slabs")

# Where a waiting malloc cannot be satisfied: (what, its type's limit, request size).  A
# backend panics or sleeps (Deadlock) there; M_WAITOK never returns NULL.
SCARCITIES = [("a type limit", 65536, 4096), ("memory running out", 1 << 40, 65536)]
SCARCE_PHYSMEM = "8M"


@pytest.fixture
def ncpus(request):
    return request.config.getoption("kalloc_ncpus", 4)


@pytest.fixture
def kalloc_options(request, kalloc_backend):
    """The --kalloc-option values for this backend (none when kalloc's own tests run the battery)."""
    return getattr(request.config, "kalloc_options", {}).get(kalloc_backend, {})


def _boot(backend, options, **machine):
    return kalloc.boot(backend, **machine, **options)


def _counts(t):
    return t.inuse, t.memuse


def test_api_contract(kalloc_backend, kalloc_options, ncpus):
    k = _boot(kalloc_backend, kalloc_options, ncpus=ncpus)
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


def test_flag_validation(kalloc_backend, kalloc_options):
    k, t = _boot(kalloc_backend, kalloc_options), MallocType("conf")
    with pytest.raises(ValueError):
        k.malloc(8, t, M_WAITOK | M_NOWAIT)
    with pytest.raises(ValueError):
        k.malloc(8, t, 0x80000)
    with pytest.raises(TypeError):
        k.malloc(8, t, "M_WAITOK")
    assert t.inuse == 0


def test_limit_semantics(kalloc_backend, kalloc_options):
    k = _boot(kalloc_backend, kalloc_options)
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


def _exhaust(k, t, size, ncpus):
    """M_WAITOK mallocs of ``size`` until one panics or sleeps: (addresses, that exception)."""
    ptrs = []
    for i in range(4096):
        try:
            a = k.malloc(size, t, M_WAITOK, i % ncpus)
        except (kalloc.KernelPanic, kalloc.Deadlock) as e:
            return ptrs, e
        assert a is not None, f"M_WAITOK malloc({size}) returned NULL after {len(ptrs)} allocations"
        ptrs.append(a)
    pytest.fail(f"{len(ptrs)} M_WAITOK mallocs of {size} bytes never ran out (physmem {SCARCE_PHYSMEM}, "
                f"type limit {t.limit})")


@pytest.mark.parametrize("what,limit,size", SCARCITIES, ids=["limit", "memory"])
def test_waitok_never_returns_null(kalloc_backend, kalloc_options, what, limit, size):
    k = _boot(kalloc_backend, kalloc_options, ncpus=2, physmem=SCARCE_PHYSMEM)
    _exhaust(k, MallocType("scarce", limit=limit), size, 2)


def _state(k, t) -> tuple:
    """What a call that sleeps must leave as it was."""
    return k.type_counters(t), k.footprint(), k.vm.kernel_map.size, k.backend.classes()


@pytest.mark.parametrize("what,limit,size", SCARCITIES, ids=["limit", "memory"])
def test_sleeping_changes_nothing(kalloc_backend, kalloc_options, what, limit, size):
    boot = lambda: _boot(kalloc_backend, kalloc_options, ncpus=2, physmem=SCARCE_PHYSMEM)  # noqa: E731
    k, t = boot(), MallocType("scarce", limit=limit)
    ptrs, e = _exhaust(k, t, size, 2)
    if not isinstance(e, kalloc.Deadlock):
        return                                   # it panics there: nothing sleeps
    twin, tt = boot(), MallocType("scarce", limit=limit)
    assert [twin.malloc(size, tt, M_WAITOK, i % 2) for i in range(len(ptrs))] == ptrs, \
        "two kernels booted alike gave different addresses for the same calls (not deterministic)"
    assert _state(k, t) == _state(twin, tt), f"the malloc that slept ({e}) changed the kernel's state"
    k.free(ptrs[-1], t, 0)                       # what wakes a sleeper; then the retry
    twin.free(ptrs[-1], tt, 0)
    again = k.malloc(size, t, M_NOWAIT, len(ptrs) % 2), twin.malloc(size, tt, M_NOWAIT, len(ptrs) % 2)
    assert again[0] == again[1] and _state(k, t) == _state(twin, tt), \
        f"after the malloc that slept ({e}), the kernel no longer behaves as one that never made it"


def test_mzero_even_after_reuse(kalloc_backend, kalloc_options, ncpus):
    k, t = _boot(kalloc_backend, kalloc_options, ncpus=ncpus), MallocType("conf")
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


def _refused(kind, what: str, call, *args) -> None:
    """call(*args) must raise ``kind``; another BadFree, or nothing, fails saying which."""
    try:
        call(*args)
    except kind:
        return
    except kalloc.BadFree as e:
        pytest.fail(f"{what} raised {type(e).__name__} ({e}), not {kind.__name__}")
    pytest.fail(f"{what} was accepted: it must raise {kind.__name__}")


@pytest.mark.parametrize("size,exc", [(-1, ValueError), (1.5, TypeError), ("8", TypeError)],
                         ids=["negative", "float", "str"])
def test_bad_sizes(kalloc_backend, kalloc_options, size, exc):
    with pytest.raises(exc):
        _boot(kalloc_backend, kalloc_options).malloc(size, MallocType("conf"))


def test_bad_cpu(kalloc_backend, kalloc_options):
    k, t = _boot(kalloc_backend, kalloc_options, ncpus=2), MallocType("conf")
    a = k.malloc(100, t, M_WAITOK, 0)
    held = _counts(t)
    for cpu in (-1, 2, 1.0):
        _refused(ValueError, f"malloc on cpu {cpu!r} of 2", k.malloc, 8, t, M_WAITOK, cpu)
        _refused(ValueError, f"free on cpu {cpu!r} of 2", k.free, a, t, cpu)
        _refused(ValueError, f"realloc on cpu {cpu!r} of 2", k.realloc, a, 5000, t, M_WAITOK, cpu)
        assert _counts(t) == held and k.usable_size(a) >= 100, f"a call on cpu {cpu!r} changed state"
    k.free(a, t, 1)
    assert _counts(t) == (0, 0)


@pytest.mark.parametrize("size", [100, 20000], ids=["small", "large"])
def test_bad_frees(kalloc_backend, kalloc_options, size):
    k, t, u = _boot(kalloc_backend, kalloc_options), MallocType("conf"), MallocType("other")
    a = k.malloc(size, t)
    held = _counts(t)
    _refused(kalloc.WrongType, "a free with the wrong type", k.free, a, u)
    _refused(kalloc.WildFree, "a free of an interior pointer", k.free, a + 4, t)
    _refused(kalloc.WildFree, "a free of an address never allocated", k.free, 0x12340, t)
    _refused(kalloc.WrongType, "a realloc with the wrong type", k.realloc, a, size * 2, u)
    assert _counts(t) == held, "a refused free changed the type's counters"
    k.free(a, t)
    _refused(kalloc.DoubleFree, "a double free", k.free, a, t)
    assert _counts(t) == (0, 0)


@pytest.mark.parametrize("size", [100, 20000], ids=["small", "large"])
def test_usable_size_of_a_block_not_live(kalloc_backend, kalloc_options, size):
    k, t = _boot(kalloc_backend, kalloc_options), MallocType("conf")
    a = k.malloc(size, t)
    assert k.usable_size(a) >= size
    k.free(a, t)
    _refused(kalloc.BadFree, "usable_size of a freed block", k.usable_size, a)
    _refused(kalloc.BadFree, "usable_size of an address never allocated", k.usable_size, 0x12340)


@pytest.mark.parametrize("null", [None, 0], ids=["None", "0"])
def test_free_null(kalloc_backend, kalloc_options, null):
    """free(NULL) returns having done nothing, or panics as the original did (the 2003 slab
    has no NULL check): a KernelPanic, not a BadFree (NULL is no misused pointer) nor any
    other exception."""
    k, t = _boot(kalloc_backend, kalloc_options), MallocType("conf")
    a = k.malloc(100, t)
    before = _state(k, t)
    try:
        k.free(null, t)
    except kalloc.KernelPanic as e:
        if not isinstance(e, kalloc.BadFree):
            return                               # the original's panic
        wrong = e
    except Exception as e:                       # noqa: BLE001 (anything else is the failure)
        wrong = e
    else:
        assert _state(k, t) == before, f"free({null!r}) changed state"
        k.free(a, t)
        return
    pytest.fail(f"free({null!r}) raised {type(wrong).__name__} ({wrong}); free(NULL) must return having "
                f"done nothing, or panic (KernelPanic, not BadFree) as the original does")


def test_kernels_share_nothing(kalloc_backend, kalloc_options, ncpus):
    boot = lambda: _boot(kalloc_backend, kalloc_options, ncpus=ncpus)  # noqa: E731
    k1, k2, t = boot(), boot(), MallocType("conf")
    sizes = (16, 100, 1000, 5000, 20000)
    mine = [k1.malloc(s, t) for s in sizes]
    for a in mine:
        _refused(kalloc.BadFree, "usable_size on a second kernel of the first one's block", k2.usable_size, a)
        _refused(kalloc.BadFree, "a free on a second kernel of the first one's block", k2.free, a, t)
    theirs = [k2.malloc(s, t) for s in sizes]
    assert theirs == mine, "a second kernel's allocations depend on the first kernel's"
    for a in mine:
        k1.free(a, t)
    for a, s in zip(theirs, sizes):
        assert k2.usable_size(a) >= s, "freeing on one kernel freed on another"
    assert k1.type_counters(t)["inuse"] == 0 and k2.type_counters(t)["inuse"] == len(sizes)


def test_classes_rows(kalloc_backend, kalloc_options):
    k, t = _boot(kalloc_backend, kalloc_options), MallocType("conf")
    for size in (16, 100, 1000, 5000, 20000):
        k.malloc(size, t)
    rows = k.backend.classes()
    assert isinstance(rows, list)
    for row in rows:
        missing = [key for key in CLASS_KEYS if key not in row]
        assert not missing, f"classes() row {row} lacks {', '.join(missing)}"
        bad = {key: row[key] for key in CLASS_KEYS if not isinstance(row[key], int) or row[key] < 0}
        assert not bad, f"classes() row {row}: {bad} are not counts"


def test_state_machine(kalloc_backend, kalloc_options, ncpus, request):
    examples = request.config.getoption("kalloc_examples", 100)
    # 128 MiB: at 64 MiB the 2003 slab's 32K zones hold one 16384-byte chunk and the original
    # corrupts itself on 15361-16383-byte requests (docs/research/slab.md 2.4; zone_limit="runtime")
    run_state_machine_as_test(machine_for(kalloc_backend, ncpus=ncpus, physmem="128M", **kalloc_options),
                              settings=settings(max_examples=examples, stateful_step_count=50,
                                                deadline=None, database=None))


def test_cache_contract(kalloc_backend, kalloc_options, ncpus):
    k = _boot(kalloc_backend, kalloc_options, ncpus=ncpus)
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


def test_cache_misuse(kalloc_backend, kalloc_options):
    k, t = _boot(kalloc_backend, kalloc_options, ncpus=2), MallocType("conf")
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
