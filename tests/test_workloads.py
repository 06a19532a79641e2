"""The bundled driver workloads on every backend: they finish, free what they allocate, give
every backend the same operation stream, and exercise what they claim to."""

from functools import cache

import pytest

import kalloc
from kalloc import plugins
from kalloc.harness import RunSpec, run_one
from kalloc.workload import Workload, resolve_params

WORKLOADS = ["tty", "net", "fs", "scsi", "larson", "prodcons"]
BACKENDS = [b for b in plugins.backends() if b != "bump"] + ["bump"]
# Small runs, explicitly: the defaults are sized for measurements (docs/calibration.md).
SMALL = {"tty": {"bursts": 40, "reserve": 20}, "net": {"packets": 300, "ring": 32},
         "fs": {"cache": 60, "turnover": 200}, "scsi": {"commands": 60},
         "larson": {"slots": 64, "rounds": 40, "epochs": 2}, "prodcons": {"objects": 300, "batch": 16}}


def run(backend, workload, ncpus, seed=0, **kw):
    return run_one(RunSpec(backend, workload, ncpus, seed, params=SMALL[workload], **kw))


@cache
def at_boot(backend, ncpus) -> dict:
    """What the kernel's own boot allocations hold, per type (kmem_map: mclrefcnt, type mbuf)."""
    types = kalloc.boot(backend, ncpus=ncpus).stats()["types"]
    return {name: (c["inuse"], c["calls"]) for name, c in types.items()}


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ncpus", [1, 2, 4])
def test_runs_clean_and_frees_everything(backend, workload, ncpus):
    r = run(backend, workload, ncpus)
    assert r["panic"] is None
    assert r["ops"]["malloc"] > 0 and r["ops"]["failed"] == 0
    boot = at_boot(backend, ncpus)
    # ZONE: kmem_map's caches are 4.8 vm_zones, whose headers zinit mallocs for good
    assert all(t["inuse"] == boot.get(t["name"], (0, 0))[0] for t in r["types"] if t["name"] != "ZONE"), r["types"]
    assert all(c["active_objs"] == 0 for c in r["caches"]), r["caches"]
    assert r["sim"]["makespan_cycles"] > 0


@pytest.mark.parametrize("workload", WORKLOADS)
def test_same_operation_stream_on_every_backend(workload):
    recs = {b: run(b, workload, 2, seed=3, warmup=0) for b in BACKENDS}
    # per-thread streams are identical; how CPUs interleave (and so the peak, and where a
    # warm-up would end) is timing: the whole run is compared.  Malloc types only: a cache's
    # objects are charged to a type on some backends, not on kmem_map (zones have none, and
    # zinit mallocs a ZONE header); the operation counts include the caches' operations.
    calls = {b: sorted((t["name"], t["calls"] - at_boot(b, 2).get(t["name"], (0, 0))[1]) for t in r["types"]
                       if t["name"] != "ZONE" and t["name"] not in {c["name"] for c in r["caches"]})
             for b, r in recs.items()}           # (at_boot is cached: one boot per backend)
    streams = {(r["ops"]["malloc"], r["ops"]["free"], r["zeroing"]["bytes_zero_requested"],
                tuple((n, c) for n, c in calls[b] if c)) for b, r in recs.items()}
    assert len(streams) == 1, streams


@pytest.mark.parametrize("workload", WORKLOADS)
def test_seeds_change_the_stream_and_repeat_exactly(workload):
    a, b, c = run("bump", workload, 2, 1), run("bump", workload, 2, 1), run("bump", workload, 2, 2)
    for r in (a, b, c):
        r.pop("wall_seconds")
    assert a == b and a != c


def test_net_drops_packets_when_memory_runs_out():
    r = run_one(RunSpec("kmem_map", "net", 2, physmem="16M", params={"packets": 300, "ring": 32, "ifq_maxlen": 0},
                        options={"fail_probability": 0.2}, warmup=0))   # drops count the whole run
    assert r["workload_counts"]["drops"] > 0 and r["ops"]["failed"] == r["workload_counts"]["drops"]
    assert r["workload_counts"]["drops"] + r["workload_counts"]["delivered"] == 300


def test_scsi_issues_zeroed_and_zero_size_requests():
    r = run("slab", "scsi", 2, warmup=0)                  # the whole run's requests
    assert r["zeroing"]["bytes_zero_requested"] >= 60 * 2 * (400 + 32)
    assert r["ops"]["malloc"] == 60 * 2 * 2 + 12          # CCB + sense, and every 10th a malloc(0)


@pytest.mark.parametrize("workload", ["net", "prodcons", "larson", "scsi"])
def test_cross_cpu_workloads_make_remote_frees_on_slab(workload):
    r = run("slab", workload, 2)
    assert r["counters"]["remote_frees"] > 0 and r["sim"]["ipis"] > 0
    p = run_one(RunSpec("slab", workload, 2, params=SMALL[workload], options={"remote_free": "passive"}))
    assert p["sim"]["ipis"] < r["sim"]["ipis"]


def test_tty_is_cpu_local():
    assert run("slab", "tty", 4)["counters"]["remote_frees"] == 0


def test_unknown_parameter():
    with pytest.raises(ValueError, match="unknown parameter 'nope' for workload 'net'"):
        run_one(RunSpec("bump", "net", params={"nope": 1}))


def test_net_drops_packets_when_the_protocol_queue_is_full():
    r = run_one(RunSpec("bump", "net", 2, params={"packets": 300, "ring": 8, "ifq_maxlen": 2, "gap_cycles": 1}))
    assert r["ops"]["failed"] == 0 and r["workload_counts"]["drops"] > 0
    assert r["workload_counts"]["drops"] + r["workload_counts"]["delivered"] == 300


def test_scsi_queue_depth_bounds_the_commands_in_flight():
    per_command = 400 + 32                      # CCB + sense (malloc(0) requests 0 bytes)
    for depth in (1, 3):
        r = run_one(RunSpec("bump", "scsi", 4, params={"commands": 60, "queue_depth": depth}))
        assert r["memory"]["peak_requested_bytes"] <= 4 * (depth + 1) * per_command
    unbounded = run_one(RunSpec("bump", "scsi", 4, params={"commands": 60, "queue_depth": 0}))
    assert unbounded["memory"]["peak_requested_bytes"] > 4 * 4 * per_command


def test_tty_reserve_is_held_for_the_whole_run():
    r = run_one(RunSpec("bump", "tty", 1, params={"bursts": 5, "reserve": 100, "max_cblocks": 1,
                                                  "line_buffer_every": 0}))
    assert r["memory"]["peak_requested_bytes"] == 101 * 128


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("ncpus", [1, 2, 4])
def test_default_warmup_is_part_of_the_run(workload, ncpus):
    cls = plugins.workload_class(workload)
    params = resolve_params(cls, {})
    warm = cls.warmup_ops(params, ncpus)
    r = run_one(RunSpec("bump", workload, ncpus))
    total = r["ops"]["malloc"] + r["ops"]["free"] + r["ops"]["realloc"]
    assert 0 < warm < total / 2, (warm, total)


def test_the_base_warmup_is_zero():
    assert Workload.warmup_ops({}, 4) == 0
