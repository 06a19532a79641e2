"""Every misuse class, caught and explained, on every installed backend."""

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import kalloc
from kalloc import M_NOWAIT, M_WAITOK, M_ZERO, MallocType, plugins
from kalloc import workload as wl
from kalloc.harness import RunSpec, run_one

BACKENDS = list(plugins.backends())
# each debug option, and all at once; no call below may fail, so fault injection never fires
DEBUG = [{"invariants": True}, {"redzone": 16}, {"quarantine": 4}, {"fail_interval": 1},
         {"redzone": 8, "quarantine": 2, "invariants": True, "fail_probability": 1.0}]
MOVES_MEMORY = ("redzone", "quarantine")   # other addresses; with redzones, bigger chunks


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


def debug_ids(opts):
    return ",".join(f"{k}={v}" for k, v in opts.items())


@pytest.mark.parametrize("opts", DEBUG, ids=debug_ids)
def test_bad_frees_are_classified_with_debug_options(backend, opts):
    k, t, u = boot(backend, **opts), MallocType("drv"), MallocType("other")
    a, b = k.malloc(100, t), k.malloc(0, t)
    with pytest.raises(kalloc.WildFree, match=f"{a + 8:#x} is inside the live allocation at {a:#x}"):
        k.free(a + 8, t)
    with pytest.raises(kalloc.WrongType, match="allocated as type 'drv' but freed as type 'other'"):
        k.free(a, u)
    with pytest.raises(ValueError, match="cpu 2 out of range"):
        k.free(a, t, cpu=2)
    with pytest.raises(kalloc.WildFree, match="never allocated"):
        k.free(0x1000, t)
    k.free(a, t, cpu=1)
    k.free(b, t)
    assert (t.inuse, t.memuse) == (0, 0)
    with pytest.raises(kalloc.DoubleFree, match=f"{a:#x}"):
        k.free(a, t)
    with pytest.raises(kalloc.DoubleFree):
        k.realloc(a, 10, t)


@pytest.mark.parametrize("opts", DEBUG, ids=debug_ids)
def test_valid_calls_answer_as_without_debug_options(backend, opts):
    """Size 0, realloc to 0, realloc of NULL, free of NULL and of malloc(0)'s pointer."""
    def script(k):
        t, out = MallocType("drv"), []

        def call(f, *args):
            try:
                r = f(*args, t)
            except kalloc.KallocError as e:
                r = e
            out.append((r is None, f"{type(r).__name__}: {r}" if isinstance(r, Exception) else None,
                        t.inuse, t.memuse if not opts.get("redzone") else None))
            return r
        z = call(k.malloc, 0)
        call(k.realloc, call(k.malloc, 100), 0)
        call(k.realloc, call(k.malloc, 16), 0)
        call(k.free, z)
        for null in (None, 0):
            call(k.free, null)
            call(k.realloc, null, 10)
        return out, z
    (plain, z), (debugged, dz) = script(boot(backend)), script(boot(backend, **opts))
    assert debugged == plain
    if backend == "slab":
        assert z == dz == 0xFFFFFFF8        # ZERO_LENGTH_PTR, redzone or not


SIZES = st.sampled_from([0, 1, 16, 17, 100, 128, 1000, 4096, 5000, 20000])
CALLS = st.lists(st.one_of(st.tuples(st.just("malloc"), SIZES, st.booleans()),
                           st.tuples(st.just("realloc"), st.integers(0, 12), SIZES),
                           st.tuples(st.just("free"), st.integers(0, 12))), max_size=25)


def replay_step(k, t, live, call, fill):
    """One call; ``live`` holds (address, size, fill byte).  An index past ``live`` means
    NULL (None or 0).  Returns the result (None, an address, or the error's text)."""
    kind, arg, *rest = call
    try:
        if kind == "malloc":
            p = k.malloc(arg, t, M_WAITOK | M_ZERO if rest[0] else M_WAITOK)
            old = None
        else:
            old = live.pop(arg) if arg < len(live) else (None if arg % 2 else 0, 0, 0)
            if kind == "free":
                return k.free(old[0], t)
            p = k.realloc(old[0], rest[0], t)
    except kalloc.KallocError as e:
        return f"{type(e).__name__}: {e}"
    size = arg if kind == "malloc" else rest[0]
    if p is not None:
        if old is not None and old[1]:
            n = min(old[1], size)
            assert k.read(p, n) == bytes([old[2]]) * n
        k.write(p, bytes([fill]) * size)
        live.append((p, size, fill))
    return p


def shape(result):
    """None, an error's text, or "an address" (which address depends on the debug options)."""
    return "an address" if isinstance(result, int) else result


@pytest.mark.parametrize("opts", DEBUG, ids=debug_ids)
@pytest.mark.parametrize("name", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(calls=CALLS)
def test_debug_options_do_not_change_valid_calls(name, opts, calls):
    """The same random valid calls on the plain backend and with debug options: the same
    None or not, errors and the type's counters (with redzones, chunks are bigger: inuse
    only); without quarantine or redzones, the same addresses."""
    plain, debugged, t = boot(name), boot(name, **opts), MallocType("prop")
    plain.bind_type(t), debugged.bind_type(t)
    same_memory = not any(opts.get(o) for o in MOVES_MEMORY)
    lives = [], []
    for i, call in enumerate(calls, 1):
        a = replay_step(plain, t, lives[0], call, i)
        b = replay_step(debugged, t, lives[1], call, i)
        assert a == b if same_memory else shape(a) == shape(b)
        ca, cb = plain.type_counters(t), debugged.type_counters(t)
        assert ca == cb if not opts.get("redzone") else ca["inuse"] == cb["inuse"]


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


def test_failslab_fails_a_realloc_and_keeps_the_block(backend):
    k, t = boot(backend, fail_interval=1), MallocType("x")
    a = k.malloc(64, t)
    k.write(a, b"kept")
    assert k.realloc(a, 5000, t, M_NOWAIT) is None and k.read(a, 4) == b"kept"
    assert k.stats()["debug"]["injected_failures"] == 1
    k.free(a, t)
    assert t.inuse == 0


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
    with pytest.raises(TypeError, match="MallocType"):
        boot(backend, fail_interval=1, fail_type="net").malloc(8, "net", M_NOWAIT)


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


@pytest.mark.parametrize("backend,extra", [("slab", {"zone_limit": "runtime"}), ("kmem_map", {}), ("bump", {})])
@pytest.mark.parametrize("options", [{"redzone": 16}, {"redzone": 8, "quarantine": 4, "invariants": True}])
def test_the_conformance_machine_passes_under_debug_options(backend, extra, options):
    """Under redzones the usable size is the requested one while the type is charged the
    chunk (charged_size), and a power-of-two size is no longer naturally aligned: the
    machine failed on both before the wrapper said so."""
    from hypothesis.stateful import run_state_machine_as_test
    from kalloc.conformance import machine_for
    run_state_machine_as_test(machine_for(backend, ncpus=2, **extra, **options),
                              settings=settings(max_examples=40, stateful_step_count=40, deadline=None))
