"""Every misuse class, caught and explained, on every installed backend."""

import pytest

import kalloc
from kalloc import M_NOWAIT, M_WAITOK, M_ZERO, MallocType, plugins
from kalloc import workload as wl
from kalloc.harness import RunSpec, run_one

BACKENDS = list(plugins.backends())


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def boot(backend, **opts):
    return kalloc.boot(backend, ncpus=2, **opts)


def test_double_free(backend):
    k, t = boot(backend), MallocType("drv")
    a = k.malloc(48, t)
    k.free(a, t)
    with pytest.raises(kalloc.BadFree) as e:
        k.free(a, t)
    assert f"{a:#x}" in str(e.value)


def test_double_free_names_both_sites_under_quarantine(backend):
    k, t = boot(backend, quarantine=8), MallocType("drv")
    a = k.malloc(48, t)
    k.free(a, t)
    with pytest.raises(kalloc.DoubleFree, match=r"first freed on cpu 0 at test_debug.py:\d+"):
        k.free(a, t)


def test_wild_and_interior_frees(backend):
    k, t = boot(backend), MallocType("drv")
    a = k.malloc(100, t)
    with pytest.raises(kalloc.WildFree, match="interior pointer"):
        k.free(a + 8, t)
    with pytest.raises(kalloc.WildFree):
        k.free(0x1000, t)
    k.free(a, t)
    assert t.inuse == 0


def test_wrong_type(backend):
    k, t, u = boot(backend), MallocType("drv"), MallocType("other")
    a = k.malloc(100, t)
    with pytest.raises(kalloc.WrongType, match="allocated as type 'drv' but freed as type 'other'"):
        k.free(a, u)
    k.free(a, t)


def test_free_on_a_backend_that_does_not_own_the_address(backend):
    other = BACKENDS[(BACKENDS.index(backend) + 1) % len(BACKENDS)]
    k1, k2, t = boot(backend), boot(other), MallocType("drv")
    a = k2.malloc(64, t)
    if k1.machine.arch.kva_min <= a:  # addresses overlap across kernels: must still be refused
        with pytest.raises(kalloc.BadFree):
            k1.free(a, t)
    k2.free(a, t)


def test_redzone_overrun_by_one_byte_past_the_request(backend):
    k, t = boot(backend, redzone=16), MallocType("drv")
    a = k.malloc(10, t, cpu=1)
    k.write(a, b"y" * 11)
    with pytest.raises(kalloc.Redzone, match=r"overrun of the 10-byte block .* type 'drv' allocated on cpu 1"):
        k.free(a, t)


def test_redzone_underrun(backend):
    k, t = boot(backend, redzone=8), MallocType("drv")
    a = k.malloc(32, t)
    k.write(a - 1, b"!")
    with pytest.raises(kalloc.Redzone, match="underrun"):
        k.free(a, t)


def test_use_after_free_write_and_read(backend):
    k, t = boot(backend, quarantine=2), MallocType("drv")
    a = k.malloc(64, t)
    k.free(a, t)
    with pytest.raises(kalloc.UseAfterFree, match="read of 4 bytes"):
        k.read(a + 4, 4)
    k.write(a + 7, b"\x01")
    with pytest.raises(kalloc.UseAfterFree, match="byte at offset 7"):
        for _ in range(3):
            k.free(k.malloc(64, t), t)


def test_failslab_only_fails_calls_that_may_fail(backend):
    k, t = boot(backend, fail_interval=1, fail_type="net"), MallocType("net")
    assert k.malloc(64, t, M_NOWAIT) is None
    assert k.malloc(64, t, M_WAITOK) is not None
    assert k.malloc(64, MallocType("other"), M_NOWAIT) is not None
    assert k.stats()["debug"]["injected_failures"] == 1


def test_failslab_probability_is_seeded(backend):
    def fails(seed):
        k, t = kalloc.boot(backend, seed=seed, fail_probability=0.3), MallocType("x")
        return [k.malloc(16, t, M_NOWAIT) is None for _ in range(50)]
    assert fails(1) == fails(1) and any(fails(1)) and not all(fails(1))


def test_failslab_times_and_sizes(backend):
    k, t = boot(backend, fail_interval=1, fail_times=2, fail_size_min=100), MallocType("x")
    got = [k.malloc(n, t, M_NOWAIT) is None for n in (50, 200, 300, 400)]
    assert got == [False, True, True, False]


def test_bad_debug_options(backend):
    with pytest.raises(ValueError, match="at most 1.0"):
        kalloc.boot(backend, fail_probability=2)
    with pytest.raises(ValueError, match="negative"):
        kalloc.boot(backend, redzone=-1)


def test_invariants_mzero_check_passes_on_correct_backends(backend):
    k, t = boot(backend, invariants=True), MallocType("x")
    ptrs = [k.malloc(n, t, M_WAITOK | M_ZERO) for n in (8, 100, 3000, 20000)]
    for p in ptrs:
        k.free(p, t)


class Overrunner:
    """A buggy driver: writes one byte past its buffer on the 5th request."""

    NAME = "overrunner"
    DESCRIPTION = "test workload"
    PARAMS = {}

    def threads(self, ctx):
        def thread():
            for i in range(10):
                h = yield wl.malloc(32, "drv")
                yield wl.write(h, b"z" * (33 if i == 4 else 32))
                yield wl.free(h)
        return [(0, "buggy", thread())]


@pytest.fixture
def overrunner():
    class Plugin:
        @kalloc.hookimpl
        def kalloc_workloads(self):
            return [Overrunner]
    pm = plugins.plugin_manager()
    p = Plugin()
    pm.register(p)
    yield
    pm.unregister(p)


def test_run_that_panics_keeps_partial_results(backend, overrunner):
    rec = run_one(RunSpec(backend, "overrunner", options={"redzone": 8}))
    assert "overrun of the 32-byte block" in rec["panic"] and "thread buggy (cpu 0)" in rec["panic"]
    assert rec["ops"]["malloc"] == 5 and rec["ops"]["free"] == 4
