"""kalloc.replay.rules: each replay rule on a hand-written trace, the three shared real traces
against an independent count, and memory that grows with live allocations only."""

import io
import json
import lzma
import re
import tracemalloc
from collections import Counter, deque
from pathlib import Path

import pytest

from kalloc.replay.parse import M_NOWAIT, M_WAITOK, M_ZERO, TraceParser
from kalloc.replay.rules import (CACHE_ALLOC, COUNTERS, FREE, MALLOC, TraceStats, count_trace,
                                 replay_ops)

TRACES = Path(__file__).resolve().parent / "traces"


def alloc(ts, cpu, ptr, size, gfp="GFP_KERNEL", cache=None):
    event, name = ("kmem_cache_alloc", f"name={cache} ") if cache else ("kmalloc", "")
    return (f"   bash  100 [{cpu:03d}] {ts:.6f}: kmem:{event}: call_site=site_{ptr}+0x10 ptr={ptr} "
            f"{name}bytes_req={size} bytes_alloc={size} gfp_flags={gfp}\n")


def free(ts, cpu, ptr, cache=None):
    event, name = ("kmem_cache_free", f" name={cache}") if cache else ("kfree", "")
    return f"   bash  100 [{cpu:03d}] {ts:.6f}: kmem:{event}: call_site=freer+0x4 ptr={ptr}{name}\n"


def replay(lines):
    parser, stats = TraceParser(), TraceStats()
    ops = list(replay_ops(parser.events(lines), stats))
    stats.take_parser_counts(parser)
    return ops, stats


def assert_counters(stats, **nonzero):
    expected = dict.fromkeys(COUNTERS, 0)
    expected.update(nonzero)
    assert {name: getattr(stats, name) for name in COUNTERS} == expected


def test_stats_contract():
    assert COUNTERS == ("events", "allocs", "frees", "null_frees", "unknown_frees",
                        "implicit_frees", "failed_allocs", "unparsed", "live_end",
                        "peak_live_requested_bytes", "cross_cpu_frees")
    assert (MALLOC, FREE, CACHE_ALLOC) == (0, 1, 2)
    stats = TraceStats()
    assert set(stats.as_dict()) == set(COUNTERS) | {"skipped", "unparsed_samples"}
    assert "events=0" in repr(stats)


def test_alloc_and_free_on_the_recorded_cpus():
    ops, stats = replay([
        alloc(1.0, 0, "0x100", 32, "GFP_KERNEL|__GFP_ZERO"),
        alloc(1.1, 1, "0x200", 64, "GFP_ATOMIC", cache="dentry"),
        free(1.2, 1, "0x100"),
        free(1.3, 1, "0x200", cache="dentry"),
    ])
    assert ops == [
        (0, MALLOC, 0, 32, M_WAITOK | M_ZERO, "site_0x100", 1.0),
        (1, CACHE_ALLOC, 1, 64, M_NOWAIT, "dentry", 64, 1.1),
        (1, FREE, 0, 1.2),
        (1, FREE, 1, 1.3),
    ]
    assert_counters(stats, events=4, allocs=2, frees=2, peak_live_requested_bytes=96, cross_cpu_frees=1)


def test_failed_allocation_is_counted_not_replayed():
    ops, stats = replay([alloc(1.0, 0, "(nil)", 32), alloc(1.1, 0, "0x0", 8)])
    assert ops == []
    assert_counters(stats, events=2, allocs=2, failed_allocs=2)


def test_free_of_null_is_a_no_op():
    ops, stats = replay([free(1.0, 0, "(nil)"), free(1.1, 1, "0x0", cache="filp")])
    assert ops == []
    assert_counters(stats, events=2, frees=2, null_frees=2)


def test_free_of_a_pointer_allocated_before_the_trace_is_skipped():
    ops, stats = replay([free(1.0, 0, "0x100"), alloc(1.1, 0, "0x100", 8), free(1.2, 0, "0x100"),
                         free(1.3, 0, "0x100")])
    assert ops == [(0, MALLOC, 0, 8, M_WAITOK, "site_0x100", 1.1), (0, FREE, 0, 1.2)]
    assert_counters(stats, events=4, allocs=1, frees=3, unknown_frees=2, peak_live_requested_bytes=8)


def test_reallocation_of_a_live_pointer_frees_the_old_one_first():
    ops, stats = replay([alloc(1.0, 0, "0x100", 10), alloc(1.1, 1, "0x100", 20),
                         alloc(1.2, 1, "0x100", 5), free(1.3, 0, "0x100")])
    assert ops == [
        (0, MALLOC, 0, 10, M_WAITOK, "site_0x100", 1.0),
        (1, FREE, 0, 1.1),                             # implicit: the new allocation's cpu and time
        (1, MALLOC, 1, 20, M_WAITOK, "site_0x100", 1.1),
        (1, FREE, 1, 1.2),                             # implicit, same cpu
        (1, MALLOC, 2, 5, M_WAITOK, "site_0x100", 1.2),
        (0, FREE, 2, 1.3),
    ]
    # The implicit free on cpu 1 of cpu 0's allocation is no free event: only the last free is
    # a cross-CPU free.
    assert_counters(stats, events=4, allocs=3, frees=1, implicit_frees=2, peak_live_requested_bytes=20,
                    cross_cpu_frees=1)


def test_peak_and_live_at_the_end():
    ops, stats = replay([alloc(1.0, 0, "0x1", 100), alloc(1.1, 0, "0x2", 200), free(1.2, 0, "0x1"),
                         alloc(1.3, 1, "0x3", 50), alloc(1.4, 1, "0x4", 60)])
    assert len(ops) == 5
    assert_counters(stats, events=5, allocs=4, frees=1, live_end=3, peak_live_requested_bytes=310)


def test_unparsed_and_skipped_come_from_the_parser():
    ops, stats = replay(["# header\n", "   bash  100 [000] 1.0: kmem:kfree: call_site=x\n",
                         free(1.1, 0, "0x10")])
    assert ops == []
    assert_counters(stats, events=1, frees=1, unknown_frees=1, unparsed=1)
    assert stats.skipped == 1
    assert stats.as_dict()["unparsed_samples"] == [[2, "   bash  100 [000] 1.0: kmem:kfree: call_site=x"]]


def test_live_end_is_set_when_the_consumer_stops_early():
    stats = TraceStats()
    ops = replay_ops(TraceParser().events([alloc(1.0, 0, "0x1", 8), alloc(1.1, 0, "0x2", 8)]), stats)
    next(ops)
    ops.close()
    assert (stats.allocs, stats.live_end) == (1, 1)


def test_count_trace_file_and_stdin(tmp_path, monkeypatch):
    text = alloc(1.0, 0, "0x1", 8) + free(1.1, 1, "0x1") + "junk\n"
    path = tmp_path / "t.txt"
    path.write_text(text)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    for stats in (count_trace(path), count_trace("-")):
        assert_counters(stats, events=2, allocs=1, frees=1, peak_live_requested_bytes=8, cross_cpu_frees=1)
        assert stats.skipped == 1
        json.dumps(stats.as_dict())


# --- the shared real traces, against a count written independently ------------------------

_EVENT = re.compile(r"\[(\d+)\]\s+(\d+\.\d+):\s+kmem:(kmalloc|kmem_cache_alloc|kfree|kmem_cache_free)"
                    r"(?:_node)?: call_site=\S+ ptr=(\S+)(?: name=\S+)?(?: bytes_req=(\d+))?")


def independent_count(path):
    """Regex over every line, a stable sort by time, then the rules over pointer strings."""
    with lzma.open(path, "rt") as f:
        records = sorted(
            (float(m[2]), n, int(m[1]), m[3].endswith("alloc"), m[4], int(m[5] or 0))
            for n, m in enumerate(map(_EVENT.search, f)) if m)
    count = Counter(events=len(records))
    owner = {}                                   # ptr text -> (cpu, size) while live
    live_bytes = 0
    for _ts, _n, cpu, is_alloc, ptr, size in records:
        count["allocs" if is_alloc else "frees"] += 1
        if ptr == "(nil)" or int(ptr, 16) == 0:
            count["failed_allocs" if is_alloc else "null_frees"] += 1
            continue
        previous = owner.pop(ptr, None)
        if previous is None and not is_alloc:
            count["unknown_frees"] += 1
        if previous is not None:
            count["implicit_frees"] += is_alloc
            count["cross_cpu_frees"] += not is_alloc and previous[0] != cpu
            live_bytes -= previous[1]
        if is_alloc:
            owner[ptr] = (cpu, size)
            live_bytes += size
            count["peak_live_requested_bytes"] = max(count["peak_live_requested_bytes"], live_bytes)
    count["live_end"] = len(owner)
    return count


@pytest.mark.parametrize("name", ["build", "exec", "fs"])
def test_shared_trace_matches_an_independent_count(name):
    path = TRACES / f"{name}.perf.txt.xz"
    stats = count_trace(path)
    expected = independent_count(path)
    assert stats.unparsed == stats.skipped == 0
    for counter in ("events", "allocs", "frees", "null_frees", "unknown_frees", "implicit_frees",
                    "failed_allocs", "live_end", "peak_live_requested_bytes", "cross_cpu_frees"):
        assert getattr(stats, counter) == expected[counter], counter


# --- memory ------------------------------------------------------------------------------

def synthetic_trace(n_events):
    """Allocations and frees alternating over 128 addresses, each object freed 64 allocations
    later by the other CPU: at most 64 live.  A generator; lines are made from a template
    because under tracemalloc every temporary string costs."""
    allocation = ("   bash  100 [%03d] %d.%06d: kmem:kmalloc: call_site=f+0x1 ptr=%s "
                  "bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL\n")
    release = "   bash  100 [%03d] %d.%06d: kmem:kfree: call_site=g+0x1 ptr=%s\n"
    ptrs = [hex(0xffff888100000000 + slot * 64) for slot in range(128)]
    for i in range(n_events // 2):
        seconds, micros = divmod(i * 1000, 1_000_000)     # a millisecond apart
        yield allocation % (i % 2, seconds, micros, ptrs[i % 128])
        yield release % ((i + 1) % 2, seconds, micros + 500, ptrs[(i - 64) % 128] if i >= 64 else "(nil)")


def test_memory_grows_with_live_allocations_not_with_the_trace():
    stats = TraceStats()
    tracemalloc.start()
    try:
        last_op = deque(replay_ops(TraceParser().events(synthetic_trace(200_000)), stats), maxlen=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert list(last_op) == [(0, FREE, 100_000 - 65, 99.9995)]
    assert stats.events == 200_000 and stats.live_end == 64
    assert stats.implicit_frees == stats.unknown_frees == 0 and stats.null_frees == 64
    assert stats.cross_cpu_frees == 100_000 - 64 and stats.peak_live_requested_bytes == 65 * 64
    assert peak < 20 << 20, f"peak {peak / 2**20:.1f} MiB"
