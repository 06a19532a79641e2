"""Replay throughput and streaming memory.

* Time: `kalloc replay` (a fresh process, start-up included) of a trace of about a million
  lines on one backend must take under 15 s on the project's 2-core machine (issue "Verdicts
  you can trust").  Its throughput against a floor measured in the same run (a loop that only
  finds each line's pointer and tracks live pointers in a dict) is recorded beside it, as a
  reference: the former target of 25 % is retired.
* Streaming: a 10-million-event synthetic trace piped into `kalloc replay -` must stay
  under 300 MB of peak RSS (memory follows the live allocations, not the file).
"""

import lzma
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REFERENCE, record

TRACES = Path(__file__).resolve().parents[1] / "tests" / "traces"
KALLOC = str(Path(sys.executable).parent / "kalloc")


@pytest.fixture(scope="module")
def million(tmp_path_factory):
    """The three shared traces, repeated with shifted timestamps: ~1.0M lines."""
    out = tmp_path_factory.mktemp("trace") / "million.perf.txt"
    shift = 0.0
    n = 0
    with open(out, "w") as f:
        for rep in range(3):
            for name in ("build", "exec", "fs"):
                last = 0.0
                for line in lzma.open(TRACES / f"{name}.perf.txt.xz", "rt"):
                    head, sep, rest = line.partition(": ")
                    pre, _, ts = head.rpartition(" ")
                    last = float(ts)
                    f.write(f"{pre} {last + shift:.6f}{sep}{rest}")
                    n += 1
                shift += last + 1.0
    return out, n


def floor(path) -> float:
    t = time.perf_counter()
    live = {}
    with open(path) as f:
        for line in f:
            i = line.find("ptr=")
            if i < 0:
                continue
            p = line[i + 4:line.find(" ", i + 4)]
            if "free" in line:
                live.pop(p, None)
            else:
                live[p] = 1
    return time.perf_counter() - t


@pytest.mark.parametrize("mode", ["", "--no-pipeline"])
@pytest.mark.parametrize("backend", ["slab", "kmem_map"])
def test_replay_throughput(million, backend, mode):
    """The command as users run it (reading in a second process on a 2-CPU machine), and
    with --no-pipeline (one process): both are recorded against the same target.  The
    speed of this shared machine drifts by tens of percent over minutes, so the floor is
    measured between the runs too, and the fastest run meets the fastest floor."""
    path, n = million
    floors = [floor(path) for _ in range(3)]
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        subprocess.run([KALLOC, "replay", str(path), "--backend", backend, "--format", "json", *mode.split()],
                       check=True, stdout=subprocess.DEVNULL, timeout=1800)
        runs.append(time.perf_counter() - t)
        floors.append(floor(path))
    f, r = min(floors), min(runs)
    how = "one process" if mode else "default"
    record(f"{backend}: replay of {n:,} lines ({how}), seconds", r, "s", "< 15", r < 15)
    record(f"{backend}: replay of {n:,} lines ({how}), throughput / floor", f / r, "x floor", REFERENCE, True)


def synthetic(n_events: int, live: int = 5000):
    """kmalloc/kfree lines on 2 CPUs, at most `live` allocations at once."""
    for i in range(n_events // 2):
        ptr = 0xffff888100000000 + (i % live) * 64 + (i // live % 2) * 0x10000000
        cpu = i & 1
        ts = 1000 + i * 1e-6
        yield (f"  w 1 [{cpu:03d}] {ts:.6f}: kmem:kmalloc: call_site=f+0x1 ptr={ptr:#x} bytes_req={32 + i % 200} "
               f"bytes_alloc=256 gfp_flags=GFP_KERNEL node=-1 accounted=false\n")
        ts2 = ts + 5e-7
        yield f"  w 1 [{1 - cpu:03d}] {ts2:.6f}: kmem:kfree: call_site=g+0x2 ptr={ptr:#x}\n"


# Runs a command and prints its peak RSS in KiB on stderr.  The command is started from this
# small process, not from pytest: a child's peak counts the pages of the process it was forked
# from until it execs, and pytest, with the million-line fixture behind it, is bigger than
# the replay being measured.
PEAK_RSS = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
            "sys.stderr.write('%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def test_streaming_10m_events_rss():
    p = subprocess.Popen([sys.executable, "-c", PEAK_RSS, KALLOC, "replay", "-", "--backend", "slab", "--format", "json"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in synthetic(10_000_000):
        p.stdin.write(line)
    p.stdin.close()
    err = p.stderr.read()
    assert p.wait(timeout=3600) == 0, err
    rss_mb = int(err.split()[-1]) / 1024
    record("replay: 10M-event stream, peak RSS", rss_mb, "MB", "<= 300", rss_mb <= 300)
