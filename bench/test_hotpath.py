"""Hot path: a same-CPU malloc+free pair of a small size against the floor.

Floor: a Python method call that pops and appends a list element, the cheapest possible
"allocator".  Target: a pair on slab or kmem_map (no debug options) costs at most 12 floors,
as the median of ratios of loops of plain calls run back to back (``paired_ratio`` says why).
"""

import statistics
import time

import pytest

import kalloc
from kalloc import plugins
from conftest import record


LOOP = range(200)     # calls per timed loop


class Floor:
    def __init__(self):
        self.free = [1, 2, 3]

    def alloc(self):
        x = self.free.pop()
        self.free.append(x)
        return x


def paired_ratio(pair_loop, floor_loop, rounds: int = 600) -> float:
    """The median over ``rounds`` of (time of ``pair_loop()``) / (time of ``floor_loop()``),
    the two run back to back.  Each loop makes LOOP plain calls, as a user's code would:
    ``free(malloc(size, t, flags, cpu), t, cpu)`` against ``alloc()``.

    Two choices, both against a flattering figure.  pytest-benchmark calls its target as
    ``f(*args, **kwargs)``, which adds about as much as the floor's own method call to
    each call and so halves the ratio of two short calls (its table below shows that
    ratio: about 10 floors for slab where plain calls give about 15); timing loops of plain
    calls leaves only the loop, the same on both sides.  And this shared virtual machine
    changes speed by up to a factor of two over minutes: two loops a few microseconds apart
    run at the same speed, the fastest rounds of two benchmarks a minute apart need not."""
    timer = time.perf_counter
    ratios = []
    for _ in range(rounds):
        t0 = timer()
        floor_loop()
        t1 = timer()
        pair_loop()
        ratios.append((timer() - t1) / (t1 - t0))
    return statistics.median(ratios)


def floor_loop(alloc=Floor().alloc):
    for _ in LOOP:
        alloc()


def test_floor(benchmark):
    """LOOP floor calls a round, for the pytest-benchmark table."""
    benchmark.pedantic(floor_loop, rounds=1000, warmup_rounds=20)


@pytest.mark.parametrize("backend", [b for b in ("slab", "kmem_map", "bump") if b in plugins.backends()])
@pytest.mark.parametrize("size", [64])
def test_malloc_free_pair(benchmark, backend, size):
    """LOOP pairs a round for the table; the ratio to the floor from paired_ratio."""
    k = kalloc.boot(backend)
    t = kalloc.MallocType("bench")
    malloc, free = k.malloc, k.free

    def pair_loop():
        for _ in LOOP:
            free(malloc(size, t, 2, 0), t, 0)
    pair_loop()
    benchmark.pedantic(pair_loop, rounds=1000, warmup_rounds=20)
    ratio = paired_ratio(pair_loop, floor_loop)
    record(f"{backend}: malloc+free pair ({size} B) / floor", ratio, "x floor", "<= 12",
           ratio <= 12 or backend == "bump")
