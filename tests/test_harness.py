"""The harness on the reference backend: virtual time, locks, IPIs, sleeps, records."""

import pytest

from kalloc.costs import CostModel
from kalloc.engine import Engine
from kalloc.errors import Deadlock
from kalloc.executors import run_grid
from kalloc.harness import RunSpec, Simulator, run_one, specs_for
from kalloc.malloc import boot
from kalloc.workload import Context, free, get, malloc, put, work


def test_engine_orders_by_time_priority_then_fifo():
    e, seen = Engine(), []
    for t, p, name in [(5, 1, "a"), (5, 0, "urgent"), (1, 1, "b"), (5, 1, "c")]:
        e.schedule(t, seen.append, name, priority=p)
    e.run()
    assert seen == ["b", "urgent", "a", "c"] and e.now == 5
    with pytest.raises(ValueError):
        e.schedule(1, seen.append, "x")


def sim(backend="bump", ncpus=2, **costs):
    return Simulator(boot(backend, ncpus=ncpus), CostModel.from_config(costs))


def test_global_lock_serialises_cpus_in_virtual_time():
    s = sim()
    def thread():
        h = yield malloc(64, "t")
        yield free(h)
    s.add_thread(0, "a", thread())
    s.add_thread(1, "b", thread())
    s.run()
    rec = s.sim_record()
    assert rec["lock_wait_cycles"] > 0            # both wanted the lock at t=0
    cpus = s.cpus_record()
    assert rec["makespan_cycles"] >= max(c["busy_cycles"] for c in cpus)
    assert sum(c["lock_wait_cycles"] for c in cpus) == rec["lock_wait_cycles"]


def test_work_advances_only_its_cpu():
    s = sim()
    def worker(n):
        yield work(n)
    s.add_thread(0, "a", worker(1000))
    s.add_thread(1, "b", worker(50))
    s.run()
    assert s.clock == [1000, 50]


def test_queue_handoff_blocks_until_put():
    s = sim()
    got = []
    def producer():
        yield work(500)
        h = yield malloc(32, "t")
        yield put(q, h)
    def consumer():
        h = yield get(q)
        got.append(s.engine.now)
        yield free(h)
    q = Context("x", {}, 2, 0).queue("q")
    s.add_thread(1, "consumer", consumer())
    s.add_thread(0, "producer", producer())
    s.run()
    assert got and got[0] >= 500 and s.ops == {"malloc": 1, "free": 1, "realloc": 0, "failed": 0}


def test_deadlock_names_the_sleeper():
    s = sim()
    def waiter():
        yield get(s_q)
    s_q = Context("x", {}, 2, 0).queue("never")
    s.add_thread(0, "lonely", waiter())
    with pytest.raises(Deadlock, match="lonely on cpu 0 waits on an empty queue"):
        s.run()


def test_run_one_is_deterministic_and_records_series():
    spec = RunSpec("bump", "tty", ncpus=2, seed=4, params={"bursts": 30})
    a, b = run_one(spec), run_one(spec)
    a.pop("wall_seconds"), b.pop("wall_seconds")
    assert a == b
    assert a["series"]["t"] == sorted(a["series"]["t"]) and len(a["series"]["t"]) > 1
    assert a["memory"]["peak_footprint_bytes"] >= a["memory"]["peak_requested_bytes"] > 0


def test_jobs_give_identical_results():
    specs = specs_for(["bump"], ["tty"], [1, 2], [0, 1], params={"bursts": 10})
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rs]
    assert strip(run_grid(specs, jobs=1)) == strip(run_grid(specs, jobs=2))


def test_costs_validation():
    with pytest.raises(ValueError, match="unknown cost"):
        CostModel.from_config({"warp": 1})
    with pytest.raises(ValueError, match="unknown cost preset"):
        CostModel.from_config({"preset": "1970"})
    assert CostModel.from_config({"preset": "modern"}).ipi_send == 300


def test_dask_local_cluster_gives_identical_results():
    pytest.importorskip("distributed")
    specs = specs_for(["bump"], ["tty"], [1, 2], [0], params={"bursts": 10})
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rs]
    assert strip(run_grid(specs, jobs=2, executor="dask")) == strip(run_grid(specs, jobs=1))


def test_an_attempt_that_sleeps_is_not_priced():
    """What the counters moved before a Deadlock (undone work) is dropped by unpriced();
    without it the next operation would pay for it."""
    sim = Simulator(boot("slab", ncpus=2), CostModel())
    base = sim._base
    sim.be.lock_acquires += 3                   # as an attempt that sleeps leaves them
    sim.unpriced()
    assert sim._priced(0, 0, None, 0) == base and sim.cpus_record()[0]["busy_cycles"] == base
    sim.be.lock_acquires += 3
    assert sim._priced(1, 0, None, 0) > base    # the same moves, charged when not dropped
