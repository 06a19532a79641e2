"""The bundled driver workloads on every backend: they finish, free what they allocate, give
every backend the same operation stream, and exercise what they claim to."""

from functools import cache

import pytest

import kalloc
from kalloc import plugins
from kalloc.harness import RunSpec, run_one

WORKLOADS = ["tty", "net", "fs", "scsi", "larson", "prodcons"]
BACKENDS = [b for b in plugins.backends() if b != "bump"] + ["bump"]
SMALL = {"tty": {"bursts": 40}, "net": {"packets": 300}, "fs": {"cache": 60, "turnover": 200},
         "scsi": {"commands": 60}, "larson": {"rounds": 40, "epochs": 2}, "prodcons": {"objects": 300}}


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
    assert all(t["inuse"] == boot.get(t["name"], (0, 0))[0] for t in r["types"]), r["types"]
    assert r["sim"]["makespan_cycles"] > 0


@pytest.mark.parametrize("workload", WORKLOADS)
def test_same_operation_stream_on_every_backend(workload):
    recs = {b: run(b, workload, 2, seed=3) for b in BACKENDS}
    # per-thread streams are identical; how CPUs interleave (and so the peak) is timing
    calls = {b: sorted((t["name"], t["calls"] - at_boot(b, 2).get(t["name"], (0, 0))[1]) for t in r["types"])
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
    r = run_one(RunSpec("kmem_map", "net", 2, physmem="16M", params={"packets": 300},
                        options={"fail_probability": 0.2}))
    assert r["workload_counts"]["drops"] > 0
    assert r["workload_counts"]["drops"] + r["workload_counts"]["delivered"] == 300


def test_scsi_issues_zeroed_and_zero_size_requests():
    r = run("slab", "scsi", 2)
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
