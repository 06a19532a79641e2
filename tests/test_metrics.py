"""Metrics of a run: exact percentiles, the warm-up phase, the record's contract (keys, per-CPU
time), determinism, CSV columns and the memory figures at the footprint peak."""

import csv
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalloc import plugins
from kalloc.costs import CostModel
from kalloc.export import to_csv, to_json
from kalloc.harness import RunSpec, Simulator, run_one, workload_warmup
from kalloc.malloc import boot
from kalloc.metrics import QUANTILES, summary
from kalloc.replay.run import replay_trace
from kalloc.workload import free, malloc, resolve_params, work

TRACE = Path(__file__).parent / "traces" / "exec.perf.txt.xz"
SMALL = {
    "tty": {"reserve": 20, "bursts": 12, "max_cblocks": 4, "think_cycles": 2000},
    "prodcons": {"objects": 300, "batch": 20},
    "larson": {"slots": 30, "rounds": 40, "epochs": 2},
    "net": {"ring": 30, "packets": 200},
    "scsi": {"commands": 60},
    "fs": {"cache": 60, "turnover": 80},
}


def spec(backend="slab", workload="tty", ncpus=2, seed=0, **kw):
    return RunSpec(backend, workload, ncpus=ncpus, seed=seed, physmem="16M", params=SMALL[workload], **kw)


# --- summary: exact nearest-rank percentiles ---------------------------------------------------

def nearest_rank(xs: list, q: float):
    """The smallest value with at least q of the values at or below it (q exact as a decimal)."""
    s = sorted(xs)
    num, den = round(q * 1000), 1000
    rank = max(1, -(-len(s) * num // den))                 # ceil(n q) in integers
    return s[rank - 1]


@settings(max_examples=50, deadline=None, derandomize=True, database=None)
@given(st.lists(st.integers(min_value=0, max_value=10 ** 9), min_size=1, max_size=300)
       | st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=2000))
def test_summary_is_exact_nearest_rank(xs):
    out = summary(Counter(xs))
    assert out["count"] == len(xs)
    assert out["max"] == max(xs)
    assert out["mean"] == round(sum(xs) / len(xs), 3)
    for name, q in QUANTILES:
        assert out[name] == nearest_rank(xs, q), name


def test_summary_hand_cases():
    assert summary({}) == {"count": 0, "mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "p999": 0, "max": 0}
    xs = list(range(1, 1001))                               # 1..1000
    out = summary(Counter(xs))
    assert (out["p50"], out["p90"], out["p99"], out["p999"], out["max"]) == (500, 900, 990, 999, 1000)
    out = summary({7: 1})
    assert out == {"count": 1, "mean": 7.0, "p50": 7, "p90": 7, "p99": 7, "p999": 7, "max": 7}
    out = summary({1: 99, 1000: 1})                         # the top 1 % is one operation
    assert (out["p50"], out["p99"], out["p999"], out["max"]) == (1, 1, 1000, 1000)


# --- warm-up ---------------------------------------------------------------------------------------

def nops(rec):
    o = rec["ops"]
    return o["malloc"] + o["free"] + o["realloc"]


@pytest.mark.parametrize("backend,workload", [("slab", "tty"), ("kmem_map", "prodcons"), ("slab", "net")])
def test_warmup_splits_the_same_run(backend, workload):
    full = run_one(spec(backend, workload, warmup=0))
    total = nops(full)
    assert full["warmup"] == {"ops": 0, "cycles": 0, "peak_footprint_bytes": full["memory"]["boot_footprint_bytes"],
                              "bytes_zeroed": 0}
    for n in (1, total // 3, total):
        r = run_one(spec(backend, workload, warmup=n))
        assert r["warmup"]["ops"] == n
        assert r["warmup"]["ops"] + nops(r) == total
        for k in ("malloc", "free", "realloc"):
            assert r["ops"][k] <= full["ops"][k]
        # the simulation is the same: only what is counted changes
        assert r["warmup"]["cycles"] + r["sim"]["cycles"] == full["sim"]["cycles"]
        assert r["warmup"]["bytes_zeroed"] + r["zeroing"]["bytes_zeroed"] == full["zeroing"]["bytes_zeroed"]
        assert r["memory"]["end_footprint_bytes"] == full["memory"]["end_footprint_bytes"]
        assert r["warmup"]["peak_footprint_bytes"] <= full["memory"]["peak_footprint_bytes"]
        # the measured latencies are the measured operations
        assert r["latency"]["malloc"]["count"] == r["ops"]["malloc"] + r["ops"]["realloc"]
        assert r["latency"]["free"]["count"] == r["ops"]["free"]
        assert r["sim"]["makespan_cycles"] <= full["sim"]["makespan_cycles"]
    assert nops(run_one(spec(backend, workload, warmup=total))) == 0


def test_warmup_longer_than_the_run_is_an_error():
    total = nops(run_one(spec(warmup=0)))
    with pytest.raises(ValueError, match="covers the whole run"):
        run_one(spec(warmup=total + 1))
    with pytest.raises(ValueError, match="warmup must be"):
        run_one(spec(warmup=-1))


@pytest.mark.parametrize("workload", ["tty", "prodcons"])
def test_default_warmup_is_the_workloads_own(workload):
    cls = plugins.workload_class(workload)
    expected = cls.warmup_ops(resolve_params(cls, SMALL[workload]), 2)
    assert expected > 0
    assert workload_warmup(cls, resolve_params(cls, SMALL[workload]), 2) == expected
    r = run_one(spec(workload=workload))
    assert r["warmup"]["ops"] == expected
    explicit = run_one(spec(workload=workload, warmup=expected))
    r.pop("wall_seconds"), explicit.pop("wall_seconds")
    assert r == explicit


# --- the record's contract -------------------------------------------------------------------------

LAT_KEYS = {"count", "mean", "p50", "p90", "p99", "p999", "max"}
CPU_KEYS = {"cpu", "busy_cycles", "allocator_cycles", "lock_wait_cycles", "ipi_handler_cycles", "idle_cycles"}


def check_record(rec, ncpus):
    assert set(rec["warmup"]) >= {"ops", "cycles", "peak_footprint_bytes", "bytes_zeroed"}
    for kind in ("malloc", "free", "ipi_handler"):
        assert set(rec["latency"][kind]) == LAT_KEYS
    assert {"allocator_share", "cycles_per_op", "makespan_cycles"} <= set(rec["sim"])
    assert {"mean_overhead_ratio", "overhead_ratio", "internal_fragmentation_bytes"} <= set(rec["memory"])
    assert [c["cpu"] for c in rec["cpus"]] == list(range(ncpus))
    makespan = rec["sim"]["makespan_cycles"]
    one_op = max(rec["latency"][k]["max"] for k in ("malloc", "free", "ipi_handler"))
    for c in rec["cpus"]:
        assert set(c) == CPU_KEYS
        assert 0 <= c["busy_cycles"] + c["idle_cycles"] - makespan <= one_op, c
        assert 0 <= c["lock_wait_cycles"] <= c["allocator_cycles"], c
        assert c["allocator_cycles"] + c["ipi_handler_cycles"] <= c["busy_cycles"]
    busy = sum(c["busy_cycles"] for c in rec["cpus"])
    alloc = sum(c["allocator_cycles"] + c["ipi_handler_cycles"] for c in rec["cpus"])
    assert busy == rec["sim"]["cycles"]
    assert rec["sim"]["allocator_share"] == round(alloc / busy, 4)
    assert rec["sim"]["cycles_per_op"] == round(alloc / nops(rec), 3)
    assert sum(c["lock_wait_cycles"] for c in rec["cpus"]) == rec["sim"]["lock_wait_cycles"]
    assert rec["latency"]["malloc"]["count"] == rec["ops"]["malloc"] + rec["ops"]["realloc"]
    assert rec["latency"]["free"]["count"] == rec["ops"]["free"]
    json.dumps(rec)                                          # JSON-serialisable


@pytest.mark.parametrize("backend", ["slab", "kmem_map", "bump"])
@pytest.mark.parametrize("workload,ncpus", [("tty", 2), ("prodcons", 2), ("net", 1), ("larson", 3)])
def test_run_one_record_contract(backend, workload, ncpus):
    rec = run_one(spec(backend, workload, ncpus))
    assert rec["panic"] is None
    check_record(rec, ncpus)


@pytest.fixture(scope="module")
def replayed():
    return replay_trace(TRACE, backend="slab", pipeline=False)


def test_replay_record_contract(replayed):
    assert replayed["panic"] is None and nops(replayed) > 1000
    check_record(replayed, replayed["ncpus"])
    assert replayed["warmup"]["ops"] == 0


def test_same_seed_same_json_bytes():
    a, b = run_one(spec("slab", "prodcons", seed=3)), run_one(spec("slab", "prodcons", seed=3))
    a.pop("wall_seconds"), b.pop("wall_seconds")
    assert to_json([a]) == to_json([b])
    c = run_one(spec("slab", "prodcons", seed=4))
    c.pop("wall_seconds")
    assert to_json([c]) != to_json([a])                     # the seed does matter


def test_csv_has_dotted_columns():
    rec = run_one(spec("kmem_map", "tty"))
    rows = list(csv.DictReader(io.StringIO(to_csv([rec]))))
    assert len(rows) == 1
    row = rows[0]
    for col in ("latency.malloc.p99", "sim.allocator_share", "warmup.ops", "memory.overhead_ratio"):
        assert col in row
    assert int(row["latency.malloc.p99"]) == rec["latency"]["malloc"]["p99"]
    assert float(row["sim.allocator_share"]) == rec["sim"]["allocator_share"]
    assert int(row["warmup.ops"]) == rec["warmup"]["ops"]


# --- memory at the footprint peak -------------------------------------------------------------------

def _mallocs(backend, n, size=100, then_free=False, gap=1000):
    s = Simulator(boot(backend, ncpus=1, physmem="16M"), CostModel())
    times = {}

    def t():
        hs = []
        for _ in range(n):
            hs.append((yield malloc(size, "t")))
        yield work(gap)
        times["free"] = s.clock[0]
        if then_free:
            for h in hs:
                yield free(h)
    s.add_thread(0, "a", t())
    s.run()
    return s, s.memory_record(), times


@pytest.mark.parametrize("backend,page,usable", [("kmem_map", 4096, 128), ("bump", 65536, 112)])
@pytest.mark.parametrize("n", [1, 3])
def test_overhead_and_fragmentation_at_the_peak(backend, page, usable, n):
    _, mem, _ = _mallocs(backend, n)
    assert mem["peak_growth_bytes"] == mem["peak_footprint_bytes"] - mem["boot_footprint_bytes"] == page
    assert mem["requested_at_peak_bytes"] == mem["peak_requested_bytes"] == 100 * n
    assert mem["overhead_ratio"] == round(mem["peak_growth_bytes"] / mem["requested_at_peak_bytes"], 4)
    assert mem["internal_fragmentation_bytes"] == n * (usable - 100)


def test_a_zero_byte_malloc_holds_its_usable_bytes():
    """malloc(0) on kmem_map takes a 16-byte chunk: no requested bytes, 16 usable (the
    internal fragmentation at the peak counts them)."""
    _, mem, _ = _mallocs("kmem_map", 1, size=0)
    assert mem["requested_at_peak_bytes"] == 0
    assert mem["internal_fragmentation_bytes"] == 16


def test_overhead_ratio_is_none_with_nothing_requested():
    s = Simulator(boot("kmem_map", ncpus=1, physmem="16M"), CostModel())
    def t():
        yield work(100)
    s.add_thread(0, "a", t())
    s.run()
    mem = s.memory_record()
    assert mem["peak_growth_bytes"] == 0 and mem["overhead_ratio"] is None and mem["mean_overhead_ratio"] is None


def test_peak_instant_is_the_operation_that_grew_the_footprint():
    _, mem, _ = _mallocs("kmem_map", 1, then_free=True)
    assert mem["peak_growth_bytes"] == 4096
    assert mem["requested_at_peak_bytes"] == 100
    assert mem["overhead_ratio"] == 40.96
    assert mem["internal_fragmentation_bytes"] == 28


def test_mean_overhead_ratio_weights_each_interval_by_what_was_live():
    s, mem, times = _mallocs("kmem_map", 1, then_free=True, gap=10_000)
    tf = times["free"]                                      # live 100 bytes over [0, tf), then 0
    end = max(s.clock)                                      # grown 4096 bytes over [0, end)
    assert mem["mean_overhead_ratio"] == round(4096 * end / (100 * tf), 4)
