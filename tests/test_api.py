"""The malloc(9) API contract, on the reference backend (real backends: their own tests
and tests/test_conformance.py)."""

import pytest

import kalloc
from kalloc import M_NOWAIT, M_WAITOK, M_ZERO, MallocType


def test_flags_have_the_2003_values():
    assert (int(kalloc.M_NOWAIT), int(kalloc.M_WAITOK), int(kalloc.M_ZERO),
            int(kalloc.M_USE_RESERVE), int(kalloc.M_NULLOK)) == (1, 2, 0x100, 0x200, 0x400)
    assert isinstance(kalloc.M_ZERO, kalloc.MallocFlags)


def test_boot_4g_64cpus_is_lazy():
    """No page frame exists before something writes it (the < 1 s target is measured in bench/)."""
    k = kalloc.boot("bump", physmem="4G", ncpus=64)
    assert k.stats()["pages"] == {"total": 1 << 20, "free": 1 << 20, "wired": 0, "page_size": 4096}
    assert k.machine.phys.frames == {}


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(ncpus=0), ValueError, "ncpus"), (dict(ncpus=1025), ValueError, "ncpus"),
    (dict(ncpus="2"), TypeError, "ncpus"), (dict(physmem="12X"), ValueError, "physmem"),
    (dict(physmem=4097 * 4096 + 1), ValueError, "multiple of the page size"),
    (dict(physmem="1M"), ValueError, "below"), (dict(physmem="8G"), ValueError, "amd64"),
    (dict(arch="vax"), ValueError, "arch"), (dict(arch=[]), ValueError, "unknown arch"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(nosuch=1), ValueError, "unknown option"), (dict(arena="big"), ValueError, "takes an integer"),
    (dict(page_policy="1999"), ValueError, "must be one of"),
])
def test_boot_rejects_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kalloc.boot("bump", **kwargs)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        kalloc.boot("nope")


def test_amd64_boots_above_4g():
    k = kalloc.boot("bump", arch="amd64", physmem="8G")
    t = MallocType("x")
    a = k.malloc(10, t)
    assert a >= 0xFFFFFF8000000000 and k.stats()["arch"] == "amd64"


def test_malloc_free_accounting_and_stats_are_json():
    import json
    k = kalloc.boot("bump")
    t = MallocType("devbuf", "device buffers")
    a = k.malloc(100, t, M_WAITOK | M_ZERO, cpu=0)
    assert k.read(a, 100) == bytes(100)
    assert (t.inuse, t.memuse, t.calls) == (1, k.usable_size(a), 1)
    assert t.limit == k.machine.physmem // 10
    k.free(a, t)
    assert (t.inuse, t.memuse, t.maxused) == (0, 0, 112)
    st = json.loads(json.dumps(k.stats()))
    assert st["types"]["devbuf"] == {"limit": t.limit, "inuse": 0, "memuse": 0, "calls": 1, "maxused": 112}
    assert {"backend", "ncpus", "physmem", "types", "classes", "pages"} <= set(st)


def test_bad_arguments_raise_clear_errors_and_change_nothing():
    k = kalloc.boot("bump", ncpus=2)
    t = MallocType("t")
    with pytest.raises(ValueError, match="mutually exclusive"):
        k.malloc(8, t, M_WAITOK | M_NOWAIT)
    with pytest.raises(ValueError, match="unknown bits"):
        k.malloc(8, t, 0x8000)
    with pytest.raises(ValueError, match="negative size"):
        k.malloc(-1, t)
    with pytest.raises(TypeError, match="size must be an integer"):
        k.malloc(1.5, t)
    with pytest.raises(ValueError, match="cpu 2 out of range"):
        k.malloc(8, t, cpu=2)
    with pytest.raises(ValueError, match="cpu -1"):
        k.malloc(8, t, cpu=-1)
    with pytest.raises(TypeError, match="MallocType"):
        k.malloc(8, "devbuf")
    assert t.calls == 0


def test_bad_frees_are_caught():
    k = kalloc.boot("bump")
    t, u = MallocType("t"), MallocType("u")
    a = k.malloc(32, t)
    with pytest.raises(kalloc.WrongType, match="allocated as type 't' but freed as type 'u'"):
        k.free(a, u)
    with pytest.raises(kalloc.WildFree, match="interior pointer"):
        k.free(a + 8, t)
    with pytest.raises(kalloc.WildFree, match="never allocated"):
        k.free(0x1234, t)
    with pytest.raises(kalloc.WrongType, match="freed as type 'None'"):
        k.free(a, None)
    k.free(a, t)
    with pytest.raises(kalloc.DoubleFree, match=f"free: {a:#x} \\(type 't'\\) is already free: double free"):
        k.free(a, t)
    with pytest.raises(kalloc.DoubleFree):
        k.free(a, None)
    assert issubclass(kalloc.BadFree, kalloc.KernelPanic)


@pytest.mark.parametrize("backend", ["slab", "kmem_map", "bump"])
def test_realloc_and_usable_size_errors_name_the_call(backend):
    k = kalloc.boot(backend, ncpus=2)
    t = MallocType("t")
    a = k.malloc(32, t)
    with pytest.raises(ValueError, match="realloc: negative size -1"):
        k.realloc(a, -1, t)
    with pytest.raises(kalloc.WildFree, match="realloc: 0x1234 \\(type 't'\\) was never allocated"):
        k.realloc(0x1234, 8, t)
    with pytest.raises(kalloc.WildFree, match=f"usable_size: 0x1234 was never allocated by backend '{backend}'"):
        k.usable_size(0x1234)
    with pytest.raises(ValueError, match="realloc: cpu 2 out of range"):
        k.realloc(None, 8, t, cpu=2)
    with pytest.raises(ValueError, match="unknown bits 0x7000"):
        k.realloc(None, 8, t, 0x7000)
    if backend != "bump":
        return
    k.write(a, b"data")
    copied = k.vm.bytes_copied
    b = k.realloc(a, 64, t)
    assert k.read(b, 4) == b"data" and k.vm.bytes_copied == copied + 32 and t.inuse == 1
    with pytest.raises(kalloc.DoubleFree, match="is already free"):
        k.realloc(a, 8, t)


def test_limit_panics_for_waitok_and_fails_for_nowait():
    k = kalloc.boot("bump")
    t = MallocType("small", limit=100)
    a = k.malloc(96, t)
    b = k.malloc(16, t)        # the test is made before adding: one overshoot is allowed
    assert k.malloc(16, t, M_NOWAIT) is None
    with pytest.raises(kalloc.KernelPanic, match="small: malloc limit exceeded"):
        k.malloc(16, t)
    assert t.calls == 4 and t.inuse == 2
    k.free(a, t), k.free(b, t)


def test_type_used_with_two_kernels_keeps_each_kernels_counters():
    t = MallocType("shared")
    k1, k2 = kalloc.boot("bump"), kalloc.boot("bump")
    a = k1.malloc(16, t)
    b = k2.malloc(32, t)
    c = k2.malloc(32, t)
    assert k1.type_counters(t)["inuse"] == 1 and k2.type_counters(t)["inuse"] == 2
    k1.free(a, t)
    assert t.inuse == 0 and k2.type_counters(t)["memuse"] == 64
    with pytest.raises(ValueError, match="never used with this kernel"):
        kalloc.boot("bump").type_counters(t)
    k2.free(b, t), k2.free(c, t)


def test_duplicate_type_name_in_one_kernel():
    k = kalloc.boot("bump")
    k.malloc(8, MallocType("dup"))
    with pytest.raises(ValueError, match="already used"):
        k.malloc(8, MallocType("dup"))
    assert k.malloc_type("dup") is k.types["dup"]


@pytest.mark.parametrize("bad", ["", None, 3])
def test_malloc_type_name_must_be_a_string(bad):
    with pytest.raises(ValueError):
        MallocType(bad)


def test_same_seed_same_addresses():
    def trace():
        k = kalloc.boot("bump", seed=3)
        t = MallocType("t")
        return [k.malloc(n, t) for n in (1, 100, 5000, 3)]
    assert trace() == trace()


@pytest.mark.parametrize("backend", ["bump", "slab", "kmem_map"])
@pytest.mark.parametrize("size", [64, 20000])                  # a chunk and a large block
def test_free_on_a_bad_cpu_is_refused_and_loses_nothing(backend, size):
    k, t = kalloc.boot(backend, ncpus=2), MallocType("t")
    a = k.malloc(size, t, cpu=0)
    for cpu in (-1, 2, 1.0, True):
        with pytest.raises(ValueError, match="out of range"):
            k.free(a, t, cpu)
        assert t.inuse == 1
    with pytest.raises(ValueError, match="out of range"):
        k.malloc(size, t, cpu=True)
    k.free(a, t, 1)
    assert (t.inuse, t.memuse) == (0, 0)
