"""kalloc.replay.parse: every trace format, compressed input, stdin, counting, ordering, fuzz."""

import gzip
import io
import itertools
import lzma
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalloc import flags
from kalloc.replay import parse
from kalloc.replay.parse import (ALLOC, EVENT_FIELDS, FREE, M_NOWAIT, M_WAITOK, M_ZERO,
                                 TraceParser, call_site_function, gfp_to_malloc_flags,
                                 open_trace)

PERF_RECENT = """\
            perf  3286 [000]  1588.589790:          kmem:kmalloc: call_site=sched_setaffinity+0x10c ptr=0xffff888102bc56c0 bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
            perf  3286 [001]  1588.589859:            kmem:kfree: call_site=sched_setaffinity+0x160 ptr=0xffff888102bc56c0
            perf  3286 [001]  1588.589862: kmem:kmem_cache_alloc: call_site=getname_flags.part.0+0x24 ptr=0xffff888100879000 name=names_cache bytes_req=4096 bytes_alloc=4096 gfp_flags=GFP_KERNEL|__GFP_ZERO node=-1 accounted=false
            perf  3286 [001]  1588.589875:  kmem:kmem_cache_free: call_site=do_sys_openat2+0x88 ptr=0xffff888100879000 name=names_cache
       perf-exec  3595 [000]  1595.624932:            kmem:kfree: call_site=ida_alloc_range+0x39b ptr=(nil)
"""

PERF_OLD = """\
     kworker/0:1    42 [001]   100.000001: kmem:kmalloc_node: call_site=ffffffff8123abcd ptr=0xffff880012340000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_ATOMIC node=1
 kworker/u4:1-ev    43 [000]   100.000002: kmem:kmem_cache_alloc_node: call_site=0xffffffff8123ab00 ptr=0xffff880012350000 bytes_req=24 bytes_alloc=32 gfp_flags=GFP_NOWAIT|__GFP_ZERO node=0
       gmain 123  4242 [001]   100.000003: kmem:kmem_cache_alloc: call_site=alloc_inode+0x1c/0x80 ptr=0xffff880012360000 bytes_req=600 bytes_alloc=640 gfp_flags=GFP_NOFS
       gmain 123  4242 [001]   100.000004: kmem:kmem_cache_free: call_site=destroy_inode+0x3a/0x60 ptr=0xffff880012360000
     kworker/0:1    42 [000]   100.000005: kmem:kfree: call_site=ffffffff8123abff ptr=0xffff880012340000
"""

FTRACE = """\
# tracer: nop
#
# entries-in-buffer/entries-written: 3/3   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
           <...>-1234    [001] d..1.  5042.123456: kmalloc: call_site=foo+0x12/0x40 ptr=00000000deadbeef bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false
            bash-2211    [000] .....  5042.123460: kfree: call_site=bar+0x5/0x30 ptr=00000000deadbeef
            bash-2211    [000] .....  5042.123470: kmem_cache_alloc: call_site=ext4_alloc_inode+0x1a/0x180 [ext4] ptr=00000000cafef00d name=ext4_inode_cache bytes_req=1184 bytes_alloc=1184 gfp_flags=GFP_NOFS|__GFP_RECLAIMABLE node=-1 accounted=true
"""

TRACE_PIPE = """\
            bash-2211    [000]  5042.123456: kmalloc: call_site=foo+0x12/0x40 ptr=00000000deadbeef bytes_req=64 bytes_alloc=64 gfp_flags=0xcc0
          <idle>-0       [001] ....  5042.123460: kmem_cache_free: call_site=bar+0x5/0x30 ptr=00000000deadbeef name=kmalloc-64
"""

TRACES = Path(__file__).resolve().parent / "traces"


def parse_text(text, window=parse.WINDOW):
    parser = TraceParser(window)
    return parser, list(parser.events(io.StringIO(text)))


def test_event_fields_are_documented():
    assert EVENT_FIELDS == ("ts", "cpu", "kind", "ptr", "bytes_req", "bytes_alloc", "gfp",
                            "tname", "call_site", "cache")
    assert (M_NOWAIT, M_WAITOK, M_ZERO) == (flags.NOWAIT, flags.WAITOK, flags.ZERO)


def test_perf_recent_kernel():
    parser, events = parse_text(PERF_RECENT)
    assert events == [
        (1588.589790, 0, ALLOC, 0xffff888102bc56c0, 32, 32, M_WAITOK, "sched_setaffinity",
         "sched_setaffinity+0x10c", False),
        (1588.589859, 1, FREE, 0xffff888102bc56c0, 0, 0, 0, "sched_setaffinity",
         "sched_setaffinity+0x160", False),
        (1588.589862, 1, ALLOC, 0xffff888100879000, 4096, 4096, M_WAITOK | M_ZERO, "names_cache",
         "getname_flags.part.0+0x24", True),
        (1588.589875, 1, FREE, 0xffff888100879000, 0, 0, 0, "names_cache", "do_sys_openat2+0x88", True),
        (1595.624932, 0, FREE, 0, 0, 0, 0, "ida_alloc_range", "ida_alloc_range+0x39b", False),
    ]
    assert (parser.lines, parser.parsed, parser.skipped, parser.unparsed) == (5, 5, 0, 0)


def test_perf_older_kernel_node_events_and_raw_call_sites():
    parser, events = parse_text(PERF_OLD)
    assert [e[1:] for e in events] == [
        (1, ALLOC, 0xffff880012340000, 100, 128, M_NOWAIT, "ffffffff8123abcd", "ffffffff8123abcd", False),
        (0, ALLOC, 0xffff880012350000, 24, 32, M_NOWAIT | M_ZERO, "0xffffffff8123ab00",
         "0xffffffff8123ab00", True),
        (1, ALLOC, 0xffff880012360000, 600, 640, M_WAITOK, "alloc_inode", "alloc_inode+0x1c/0x80", True),
        (1, FREE, 0xffff880012360000, 0, 0, 0, "destroy_inode", "destroy_inode+0x3a/0x60", True),
        (0, FREE, 0xffff880012340000, 0, 0, 0, "ffffffff8123abff", "ffffffff8123abff", False),
    ]
    assert parser.parsed == 5 and parser.unparsed == 0


def test_empty_cache_name_is_unparsed_not_a_type():
    """A cut or damaged ``name=`` is no cache name: the line is counted, not replayed under
    a type without a name (which kalloc.MallocType refuses)."""
    lines = PERF_RECENT.splitlines(keepends=True)
    damaged = [lines[2].replace("name=names_cache", "name="), lines[3].replace("names_cache", " ")]
    parser, events = parse_text("".join(damaged))
    assert events == [] and (parser.parsed, parser.unparsed) == (0, 2)
    assert [lineno for lineno, _ in parser.unparsed_samples] == [1, 2]
    for line in damaged:
        with pytest.raises(ValueError, match="empty name="):
            parser.parse_line(line)


def test_ftrace_with_header_and_flags_column():
    parser, events = parse_text(FTRACE)
    assert [e[:5] for e in events] == [
        (5042.123456, 1, ALLOC, 0xdeadbeef, 64),
        (5042.123460, 0, FREE, 0xdeadbeef, 0),
        (5042.123470, 0, ALLOC, 0xcafef00d, 1184),
    ]
    assert [e[6:] for e in events] == [
        (M_WAITOK, "foo", "foo+0x12/0x40", False),
        (0, "bar", "bar+0x5/0x30", False),
        (M_WAITOK, "ext4_inode_cache", "ext4_alloc_inode+0x1a/0x180 [ext4]", True),
    ]
    assert (parser.lines, parser.parsed, parser.skipped, parser.unparsed) == (15, 3, 12, 0)


# `trace-cmd report` (libtraceevent's kmem plugin): the event name padded, the call site
# resolved in parentheses before the raw call_site= field; the same line twice, so that the
# second is read by events()'s fast path, and an old kernel's ftrace NULL.
TRACE_CMD = """\
 trace-cmd-1234  [001]  1234.567891: kmalloc:              (tracing_open_pipe+0x4f) call_site=ffffffff810d2b9f ptr=0xffff88003d6b0000 bytes_req=4000 bytes_alloc=4096 gfp_flags=GFP_KERNEL|GFP_ZERO
 trace-cmd-1234  [001]  1234.567892: kfree:                (free_pipe_info+0x2a) call_site=ffffffff810d2c00 ptr=0xffff88003d6b0000
 trace-cmd-1234  [001]  1234.567893: kmalloc:              (tracing_open_pipe+0x4f) call_site=ffffffff810d2b9f ptr=0xffff88003d6b1000 bytes_req=4000 bytes_alloc=4096 gfp_flags=GFP_KERNEL|GFP_ZERO
 trace-cmd-1234  [000]  1234.567894: kmem_cache_free:      (putname+0x50) call_site=ffffffff811a0050 ptr=(null)
"""


def test_trace_cmd_report_takes_the_resolved_call_site():
    parser, events = parse_text(TRACE_CMD)
    assert [e[2:4] + e[6:] for e in events] == [
        (ALLOC, 0xffff88003d6b0000, M_WAITOK | M_ZERO, "tracing_open_pipe", "tracing_open_pipe+0x4f", False),
        (FREE, 0xffff88003d6b0000, 0, "free_pipe_info", "free_pipe_info+0x2a", False),
        (ALLOC, 0xffff88003d6b1000, M_WAITOK | M_ZERO, "tracing_open_pipe", "tracing_open_pipe+0x4f", False),
        (FREE, 0, 0, "putname", "putname+0x50", True),
    ]
    assert parser.skipped == parser.unparsed == 0
    assert [TraceParser().parse_line(line) for line in TRACE_CMD.splitlines()] == events


def test_trace_pipe_without_header_or_flags():
    parser, events = parse_text(TRACE_PIPE)
    assert [e[:4] + e[6:8] for e in events] == [
        (5042.123456, 0, ALLOC, 0xdeadbeef, M_WAITOK, "foo"),
        (5042.123460, 1, FREE, 0xdeadbeef, 0, "kmalloc-64"),
    ]
    assert parser.skipped == parser.unparsed == 0


@pytest.mark.parametrize("ptr", ["(nil)", "(null)", "0000000000000000", "0x0", "0"])
def test_every_spelling_of_null(ptr):
    for line in (f"bash-1 [000] 1.5: kfree: call_site=f+0x1/0x2 ptr={ptr}\n",
                 f"bash-1 [000] 1.5: kfree: call_site=f+0x1/0x2 ptr={ptr}",
                 f"perf 1 [000] 1.5: kmem:kmem_cache_free: call_site=f+0x1 ptr={ptr} name=x\n",
                 f"perf 1 [000] 1.5: kmem:kmalloc: call_site=f+0x1 ptr={ptr} bytes_req=8 "
                 "bytes_alloc=8 gfp_flags=GFP_KERNEL\n"):
        assert TraceParser().parse_line(line)[3] == 0


@pytest.mark.parametrize("text, flags", [
    ("GFP_KERNEL", M_WAITOK),
    ("GFP_KERNEL|__GFP_ZERO", M_WAITOK | M_ZERO),
    ("GFP_KERNEL_ACCOUNT", M_WAITOK),
    ("GFP_NOFS|__GFP_ZERO|__GFP_NOFAIL|__GFP_ACCOUNT", M_WAITOK | M_ZERO),
    ("GFP_NOIO", M_WAITOK),
    ("GFP_USER", M_WAITOK),
    ("GFP_HIGHUSER_MOVABLE", M_WAITOK),
    ("GFP_TRANSHUGE", M_WAITOK),
    ("__GFP_DIRECT_RECLAIM", M_WAITOK),
    ("__GFP_NOFAIL", M_WAITOK),
    ("GFP_NOWAIT|__GFP_FS|__GFP_NORETRY|__GFP_NOMEMALLOC", M_NOWAIT),
    ("GFP_ATOMIC|__GFP_NOWARN", M_NOWAIT),
    ("GFP_NOWAIT|__GFP_ZERO", M_NOWAIT | M_ZERO),
    ("GFP_TRANSHUGE_LIGHT", M_NOWAIT),
    ("__GFP_IO|__GFP_FS", M_NOWAIT),
    ("none", M_NOWAIT),
    # before 4.5 (include/trace/events/gfpflags.h): single flags printed without "__"
    ("GFP_KERNEL|GFP_ZERO", M_WAITOK | M_ZERO),
    ("GFP_ATOMIC|GFP_NOWARN|GFP_ZERO", M_NOWAIT | M_ZERO),
    ("GFP_TEMPORARY", M_WAITOK),
    ("GFP_WAIT|GFP_IO", M_WAITOK),
    ("GFP_NOFAIL", M_WAITOK),
    ("GFP_IOFS", M_NOWAIT),
    # numeric masks, with the bits of Linux 5.x/6.x
    ("0xcc0", M_WAITOK),                 # GFP_KERNEL
    ("0xdc0", M_WAITOK | M_ZERO),        # GFP_KERNEL|__GFP_ZERO
    ("0xa20", M_NOWAIT),                 # GFP_ATOMIC
    ("0x900", M_NOWAIT | M_ZERO),        # GFP_NOWAIT|__GFP_ZERO
    ("0x8000", M_WAITOK),                # __GFP_NOFAIL
    ("0", M_NOWAIT),
    ("GFP_ATOMIC|0x400", M_WAITOK),
    ("0xzz", M_NOWAIT),
])
def test_gfp_mapping(text, flags):
    assert gfp_to_malloc_flags(text) == flags


def test_numeric_gfp_in_a_line():
    line = "perf 1 [001] 2.0: kmem:kmalloc: call_site=f ptr=0x10 bytes_req=1 bytes_alloc=8 gfp_flags=0xdc0\n"
    assert TraceParser().parse_line(line)[6] == M_WAITOK | M_ZERO


@pytest.mark.parametrize("call_site, function", [
    ("sched_setaffinity+0x10c", "sched_setaffinity"),
    ("getname_flags.part.0+0x24", "getname_flags.part.0"),
    ("foo+0x1c/0x80", "foo"),
    ("ext4_alloc_inode+0x1a/0x180 [ext4]", "ext4_alloc_inode"),
    ("ffffffff8123abcd", "ffffffff8123abcd"),
    ("0xffffffff8123abcd", "0xffffffff8123abcd"),
])
def test_call_site_function(call_site, function):
    assert call_site_function(call_site) == function


def test_command_names_with_spaces_digits_colons_and_brackets():
    lines = [
        "       gmain 123  4242 [001]  10.5: kmem:kfree: call_site=f+0x1 ptr=0x10\n",
        "  kworker/u4:1-ev   9 [000]  10.6: kmem:kfree: call_site=f+0x1 ptr=0x20\n",
        "      a: b [7] c  4242 [001]  10.7: kmem:kfree: call_site=f+0x1 ptr=0x30\n",
        "      x 12 [000] y-77    [001] d..1.  10.8: kfree: call_site=f+0x1/0x2 ptr=40\n",
        "            perf  3286 [000]  10.9:          1 kmem:kfree: call_site=f+0x1 ptr=0x50\n",
    ]
    parser, events = parse_text("".join(lines))
    assert [(e[0], e[1], e[3]) for e in events] == [
        (10.5, 1, 0x10), (10.6, 0, 0x20), (10.7, 1, 0x30), (10.8, 1, 0x40), (10.9, 0, 0x50)]
    assert parser.unparsed == parser.skipped == 0


def test_skipped_and_unparsed_are_counted_with_samples():
    lines = [
        "# tracer: nop",                                                             # 1 skipped
        "",                                                                          # 2 skipped
        "CPU:1 [LOST 12 EVENTS]",                                                    # 3 skipped
        "  bash-1 [000] 1.0: sched_switch: prev_comm=bash prev_pid=1 next_comm=x",   # 4 skipped
        "  bash-1 [000] 1.0: kmem:mm_page_alloc: page=0x1 pfn=0x2 order=0",          # 5 skipped
        "  bash-1 [000] 1.1: kfree <-do_thing",                                      # 6 skipped
        "  perf 1 [000] 1.2: kmem:kfree: call_site=f+0x1 ptr=0x10",                  # 7 ok
        "  perf 1 [000] 1.3: kmem:kfree: call_site=f+0x1",                           # 8 no ptr
        "  perf 1 [000] 1.4: kmem:kmalloc: call_site=f ptr=0x1 bytes_req=x bytes_alloc=8 "
        "gfp_flags=GFP_KERNEL",                                                      # 9 size
        "  perf 1 [000] 1.5: kmem:kmalloc: call_site=f ptr=0x1 bytes_req=8",         # 10 cut off
        "  perf 1 [0x1] 1.6: kmem:kfree: call_site=f+0x1 ptr=0x10",                  # 11 cpu
        "  perf 1 [000] 1.7:            kmem:kfree:",                                # 12 cut off
        "  perf 1 [000] 1.8: kmem:kfree: call_site=f+0x1 ptr=0xzz",                  # 13 ptr
        "  perf 1 [000] 1.9: kmem:kfree: call_site=f+0x1 ptr=0x20",                  # 14 ok
    ]
    parser, events = parse_text("\n".join(lines) + "\n")
    assert [e[3] for e in events] == [0x10, 0x20]
    assert (parser.lines, parser.parsed, parser.skipped, parser.unparsed) == (14, 2, 6, 6)
    assert parser.unparsed_samples == [(n, lines[n - 1]) for n in (8, 9, 10, 11, 12)]


@pytest.mark.parametrize("ts", ["1e30", "inf", "nan", "-1.5", "+1.5", "1_000.5", "0x10.5", ".5"])
def test_a_timestamp_not_printed_as_seconds_is_unparsed(ts):
    """float() reads all of these, and one "1e30" made the replay last 10^39 cycles."""
    line = f"  perf 1 [000] {ts}: kmem:kfree: call_site=f+0x1 ptr=0x10\n"
    parser, events = parse_text(line)
    assert events == [] and parser.unparsed == 1
    with pytest.raises(ValueError, match="timestamp"):
        parser.parse_line(line)
    assert parse_text(line.replace(ts, "1595"))[1][0][0] == 1595.0    # a counter clock: digits only


def test_bytes_req_above_bytes_alloc_is_unparsed():
    line = ("  perf 1 [000] 1.5: kmem:kmalloc: call_site=f+0x1 ptr=0x10 bytes_req=%d bytes_alloc=64 "
            "gfp_flags=GFP_KERNEL\n")
    parser, events = parse_text(line % 65 + line % 64)
    assert [e[4:6] for e in events] == [(64, 64)] and parser.unparsed == 1


def test_counters_add_up_over_several_inputs():
    parser = TraceParser()
    for text in (PERF_RECENT, FTRACE):
        list(parser.events(io.StringIO(text)))
    assert (parser.lines, parser.parsed, parser.skipped, parser.unparsed) == (20, 8, 12, 0)


def _free_line(ts, ptr, cpu=0):
    return f"  bash-1 [{cpu:03d}] {ts:.6f}: kfree: call_site=f+0x1/0x2 ptr={ptr:x}\n"


def test_reorder_window_sorts_slightly_late_events():
    stamps = [1.0, 3.0, 2.0, 2.0, 5.0, 4.0, 1.5, 6.0]
    text = "".join(_free_line(ts, i + 1) for i, ts in enumerate(stamps))
    _, events = parse_text(text, window=8)
    assert [(e[0], e[3]) for e in events] == sorted(
        ((ts, i + 1) for i, ts in enumerate(stamps)), key=lambda pair: pair[0])
    assert [e[3] for e in events if e[0] == 2.0] == [3, 4]      # ties keep arrival order


def test_events_later_than_the_window_come_out_in_arrival_order():
    stamps = [10.0, 11.0, 12.0, 13.0, 1.0, 14.0]
    text = "".join(_free_line(ts, i + 1) for i, ts in enumerate(stamps))
    _, events = parse_text(text, window=2)
    # 10 and 11 have left the window when 1.0 arrives: it is emitted as soon as it is the
    # earliest pending event, after them.
    assert [e[0] for e in events] == [10.0, 11.0, 1.0, 12.0, 13.0, 14.0]
    _, events = parse_text(text, window=0)
    assert [e[0] for e in events] == stamps


def test_window_bounds_pending_events():
    parser = TraceParser(window=3)
    produced = []

    def lines():
        for i in range(20):
            produced.append(i)
            yield _free_line(float(i), i + 1)

    for event in parser.events(lines()):
        assert len(produced) - int(event[0]) <= 4       # at most 3 events held back
    with pytest.raises(ValueError):
        TraceParser(window=-1)


@pytest.mark.parametrize("suffix, opener", [
    (".txt", open), (".gz", gzip.open), (".xz", lzma.open)])
def test_open_trace_by_suffix(tmp_path, suffix, opener):
    path = tmp_path / f"trace{suffix}"
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(PERF_RECENT)
    with open_trace(path) as lines:
        assert iter(lines) is lines                     # a stream, not a list of lines
        assert list(TraceParser().events(lines)) == parse_text(PERF_RECENT)[1]


def test_open_trace_replaces_undecodable_bytes(tmp_path):
    path = tmp_path / "trace.txt"
    path.write_bytes(b"\xff\xfe garbage\n" + PERF_RECENT.encode())
    parser = TraceParser()
    with open_trace(path) as lines:
        assert len(list(parser.events(lines))) == 5
    assert parser.skipped == 1


def test_open_trace_zst_needs_zstandard(tmp_path, monkeypatch):
    monkeypatch.setattr(parse, "zstandard", None)
    with pytest.raises(ValueError, match="pip install zstandard"):
        open_trace(tmp_path / "trace.zst")


def test_open_trace_zst_reads_every_frame(tmp_path):
    if parse.zstandard is None:
        pytest.skip("the optional zstandard package is not installed")
    frame = parse.zstandard.ZstdCompressor().compress(PERF_RECENT.encode())
    path = tmp_path / "trace.zst"
    path.write_bytes(frame + frame)
    with open_trace(path) as lines:
        assert len(list(TraceParser().events(lines))) == 10


def test_open_trace_missing_file(tmp_path):
    for name in ("missing.txt", "missing.xz", "missing.gz"):
        with pytest.raises(FileNotFoundError, match="trace file not found") as info:
            open_trace(tmp_path / name)
        assert info.value.filename == str(tmp_path / name)


def test_open_trace_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(FTRACE))
    parser = TraceParser()
    assert len(list(parser.events(open_trace("-")))) == 3


def test_open_trace_stdin_replaces_undecodable_bytes_and_leaves_fd_0_open(tmp_path, monkeypatch):
    path = tmp_path / "stdin.txt"
    path.write_bytes(b"\xff\xfe\n" + PERF_RECENT.encode())
    with open(path, encoding="utf-8") as stdin:         # strict: reading it would raise
        monkeypatch.setattr("sys.stdin", stdin)
        parser = TraceParser()
        with open_trace("-") as lines:
            assert len(list(parser.events(lines))) == 5
        assert parser.skipped == 1
        os.fstat(stdin.fileno())                         # still open


REAL_LINES = (PERF_RECENT + PERF_OLD + FTRACE + TRACE_PIPE).splitlines(keepends=True)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=20))
def test_arbitrary_text_never_raises(lines):
    parser = TraceParser(window=4)
    list(parser.events(lines))
    assert parser.lines == parser.parsed + parser.skipped + parser.unparsed == len(lines)
    assert len(parser.unparsed_samples) <= 5


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(REAL_LINES), st.integers(0, 250), st.integers(0, 250), st.text(max_size=8))
def test_damaged_real_lines_never_raise(line, start, stop, insert):
    damaged = line[:start] + insert + line[stop:]
    parser = TraceParser()
    events = list(parser.events([damaged]))
    assert parser.lines == 1 == parser.parsed + parser.skipped + parser.unparsed
    for event in events:
        assert len(event) == len(EVENT_FIELDS) and event[2] in (ALLOC, FREE)
        assert event[1] >= 0 and event[3] >= 0 and event[4] >= 0


def reference_events(lines):
    """What events() must yield with window=0: parse_line on every line, in order."""
    events, unparsed = [], 0
    for line in lines:
        try:
            event = TraceParser().parse_line(line)
        except ValueError:
            unparsed += 1
            continue
        if event is not None:
            events.append(event)
    return events, unparsed


@settings(max_examples=600, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REAL_LINES), st.integers(0, 250), st.integers(0, 250),
                          st.text(alphabet=st.sampled_from(" :.0123456789[]x-=\n٣"), max_size=6)),
                max_size=12))
def test_the_fast_path_reads_every_line_as_parse_line_does(damage):
    # Each real line comes first intact, so the fast path's caches know its pieces, then
    # damaged: a cached piece must never let a changed line through with the old reading.
    lines = []
    for line, start, stop, insert in damage:
        lines += [line, line[:start] + insert + line[stop:]]
    parser = TraceParser(window=0)
    events = list(parser.events(lines))
    expected, unparsed = reference_events(lines)
    assert events == expected
    assert parser.unparsed == unparsed and parser.parsed == len(expected)


def test_the_fast_path_agrees_with_parse_line_on_a_real_trace():
    with open_trace(TRACES / "build.perf.txt.xz") as lines:
        lines = list(itertools.islice(lines, 50_000))
    parser = TraceParser(window=0)
    assert list(parser.events(lines)) == reference_events(lines)[0]


def test_fast_path_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(parse, "_CACHE_LIMIT", 50)
    lines = [f"  perf 1 [000] {1 + i / 1e5:.6f}: kmem:kmalloc: call_site=f{i % 7}+0x1 "
             f"ptr=0x{i + 1:x} bytes_req={i} bytes_alloc={i} gfp_flags=GFP_KERNEL\n"
             for i in range(2_000)]
    parser = TraceParser(window=0)
    events = list(parser.events(lines))
    assert [event[4] for event in events] == list(range(2_000))
    assert sum(len(entry[2]) for entry in parser._mids.values()) <= 50
    assert len(parser._heads) <= 50 and len(parser._mids) <= 50
