"""The harness's cost per priced operation, against a bare backend operation.

A run spends most of its time in the harness (threads, events, pricing, metrics), not in the
backend, so this is the speed that matters for long runs.  Floor: a bare backend operation,
``k.malloc``/``k.free`` pairs of 64 bytes on the same CPU of a kernel booted like the run's (the
same backend and CPU count), measured in the same process right before and after the run.
Figure: the run's wall time (boot and record included) / its allocator operations (warm-up
included) / the floor.  Target (issue "Verdicts you can trust"): at most 5 bare operations, for
tty, net and fs at 4 CPUs on slab and kmem_map, at the default workload sizes.
"""

import time

import pytest

import kalloc
from kalloc.harness import RunSpec, run_one
from conftest import record

PAIRS = 20000


def bare_op(backend: str, ncpus: int) -> float:
    """Seconds per bare malloc or free (the fastest of five loops of PAIRS pairs)."""
    k = kalloc.boot(backend, ncpus=ncpus)
    t = kalloc.MallocType("bench")
    malloc, free = k.malloc, k.free
    for _ in range(1000):
        free(malloc(64, t, 2, 0), t, 0)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(PAIRS):
            free(malloc(64, t, 2, 0), t, 0)
        best = min(best, (time.perf_counter() - t0) / (2 * PAIRS))
    return best


@pytest.mark.parametrize("workload", ["tty", "net", "fs"])
@pytest.mark.parametrize("backend", ["slab", "kmem_map"])
def test_priced_operation_against_a_bare_one(backend, workload):
    spec = RunSpec(backend, workload, ncpus=4)
    floors = [bare_op(backend, 4)]
    runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        rec = run_one(spec)
        runs.append(time.perf_counter() - t0)
        floors.append(bare_op(backend, 4))
    ops = rec["warmup"]["ops"] + sum(rec["ops"][k] for k in ("malloc", "free", "realloc"))
    ratio = min(runs) / ops / min(floors)
    record(f"{backend}: {workload} at 4 CPUs, priced op / bare op", ratio, "x bare", "<= 5", ratio <= 5)
