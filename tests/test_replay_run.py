"""Replaying the shared real traces on every backend, from the API and the CLI."""

import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from kalloc import plugins
from kalloc.replay.rules import count_trace
from kalloc.replay.run import replay_backends, replay_trace

TRACES = Path(__file__).resolve().parent / "traces"
KALLOC = str(Path(sys.executable).parent / "kalloc")
NAMES = ["build", "exec", "fs"]


# 512M: bump never reuses memory, and each trace allocates more than the 64M default in all.
@pytest.mark.parametrize("backend", list(plugins.backends()))
@pytest.mark.parametrize("name", NAMES)
def test_shared_traces_replay_on_every_backend(name, backend):
    path = TRACES / f"{name}.perf.txt.xz"
    rec = replay_trace(path, backend, physmem="512M")
    expect = count_trace(path).as_dict()
    got = rec["trace"]
    assert {k: got[k] for k in expect} == expect
    assert rec["panic"] is None and rec["ncpus"] == 2
    replayed_mallocs = expect["allocs"] - expect["failed_allocs"]
    assert rec["ops"]["malloc"] == replayed_mallocs
    assert rec["ops"]["free"] == (expect["frees"] - expect["null_frees"] - expect["unknown_frees"]
                                  + expect["implicit_frees"] - got["would_sleep"] - rec["ops"]["failed"])
    assert rec["memory"]["peak_requested_bytes"] <= expect["peak_live_requested_bytes"]
    caches = {c["name"] for c in rec["caches"]}    # objects of a cache count once: as the cache's
    live = (sum(t["inuse"] for t in rec["types"] if t["name"] not in caches and t["name"] != "ZONE")
            + sum(c["active_objs"] for c in rec["caches"]))
    assert live >= expect["live_end"] - rec["ops"]["failed"]


def small_trace(tmp_path, lines):
    p = tmp_path / "t.perf.txt.gz"
    with gzip.open(p, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return p


LINES = [
    "  a 1 [000] 1.000000: kmem:kmalloc: call_site=f+0x1 ptr=0xffff000000001000 bytes_req=100 bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false",
    "  a 1 [001] 1.000100: kmem:kmem_cache_alloc: call_site=g+0x2 ptr=0xffff000000002000 name=dentry bytes_req=192 bytes_alloc=192 gfp_flags=GFP_ATOMIC|__GFP_ZERO node=-1 accounted=true",
    "  a 1 [001] 1.000200: kmem:kfree: call_site=h+0x3 ptr=0xffff000000001000",
    "  a 1 [000] 1.000300: kmem:kfree: call_site=h+0x3 ptr=this-is-not-a-pointer",
    "  a 1 [000] 1.000400: sched:sched_switch: prev_comm=a",
]


def test_small_trace_counts_and_cross_cpu_free(tmp_path):
    rec = replay_trace(small_trace(tmp_path, LINES), "slab" if "slab" in plugins.backends() else "bump")
    t = rec["trace"]
    assert (t["events"], t["allocs"], t["frees"], t["cross_cpu_frees"], t["unparsed"], t["skipped"]) == (3, 2, 1, 1, 1, 1)
    assert t["unparsed_samples"][0][0] == 4 and "not-a-pointer" in t["unparsed_samples"][0][1]
    assert rec["zeroing"]["bytes_zero_requested"] == 192
    assert {x["name"] for x in rec["types"]} >= {"f", "dentry"}


def test_cli_replay_stdin_and_determinism(tmp_path):
    text = "\n".join(LINES) + "\n"
    run = lambda: subprocess.run([KALLOC, "replay", "-", "--backends", "bump", "--format", "json"],
                                 input=text, capture_output=True, text=True, timeout=60)
    a, b = run(), run()
    assert a.returncode == 0, a.stderr
    strip = lambda out: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in json.loads(out)]
    assert strip(a.stdout) == strip(b.stdout)
    assert json.loads(a.stdout)[0]["trace"]["allocs"] == 2


def test_cli_replay_on_two_backends_puts_them_side_by_side_first(tmp_path):
    """The table format opens with one comparison of every backend (ratios to the first),
    then gives each run in full."""
    p = subprocess.run([KALLOC, "replay", str(small_trace(tmp_path, LINES)), "--backends", "slab,kmem_map"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    head, _, rest = p.stdout.partition("\noperations\n")
    named = [word for line in head.splitlines() for word in line.split() if word in ("slab", "kmem_map")]
    assert named == ["slab", "kmem_map", "slab"]     # side by side, then the first line of slab's report
    assert rest.count("\noperations\n") == 1        # and later kmem_map's report


def test_stdin_is_replayed_whole_on_every_backend(tmp_path):
    """Standard input can be read only once: every backend is fed the same pass over it, and
    each record is the one that backend gets alone from a file (it once got an empty trace
    for every backend after the first)."""
    text = "\n".join(LINES * 50) + "\n"
    names = list(plugins.backends())
    p = subprocess.run([KALLOC, "replay", "-", "--backends", ",".join(names), "--format", "json"],
                       input=text, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    (tmp_path / "t.txt").write_text(text)
    alone = lambda r: {k: v for k, v in r.items() if k not in ("workload", "workload_variant", "wall_seconds", "trace")}  # noqa: E731
    for rec, name in zip(json.loads(p.stdout), names, strict=True):
        file_rec = replay_trace(tmp_path / "t.txt", name, physmem="64M")
        assert rec["backend"] == name and rec["trace"]["events"] == 150
        assert alone(rec) == alone(file_rec)
        assert rec["trace"]["sha256"] is None                     # standard input cannot be read again
        assert {**rec["trace"], "path": None, "sha256": None} == {**file_rec["trace"], "path": None, "sha256": None}


def test_cli_compare_with_trace_sits_beside_workloads(tmp_path):
    p = subprocess.run([KALLOC, "compare", "--backends", "bump", "--workloads", "tty", "--ncpus", "1",
                        "--param", "bursts=5", "--trace", str(small_trace(tmp_path, LINES)), "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [r["workload"].split(":")[0] for r in json.loads(p.stdout)] == ["tty", "trace"]


def test_cli_missing_trace_is_exit_2():
    p = subprocess.run([KALLOC, "replay", "/nonexistent/trace.xz"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "not found" in p.stderr


def test_a_damaged_cache_name_is_counted_not_fatal(tmp_path):
    """An empty ``name=`` once ended the replay with "malloc type name must be a non-empty
    string": now the line is unparsed and the rest of the trace is replayed."""
    lines = [LINES[1].replace("name=dentry", "name="), *LINES[:1], LINES[2]]
    for pipeline in (False, True):
        rec = replay_trace(small_trace(tmp_path, lines), "bump", pipeline=pipeline)
        assert rec["panic"] is None
        assert (rec["trace"]["unparsed"], rec["ops"]["malloc"], rec["ops"]["free"]) == (1, 1, 1)


def test_cpu_beyond_what_kalloc_simulates_asks_for_ncpus(tmp_path):
    """A [cpu] column above 1023 (damage, or a bigger machine) cannot size the machine: one
    line that says to give --ncpus, and with it the events fold onto cpu % ncpus."""
    path = small_trace(tmp_path, [LINES[0].replace("[000]", "[9000]"), *LINES[1:3]])
    p = subprocess.run([KALLOC, "replay", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1
    assert "CPU 9000" in p.stderr and "--ncpus" in p.stderr and "Traceback" not in p.stderr
    rec = replay_trace(path, "bump", ncpus=2)
    assert (rec["ncpus"], rec["trace"]["folded_cpu_events"], rec["ops"]["free"]) == (2, 1, 1)


def _same(a: dict, b: dict) -> bool:
    strip = lambda r: json.dumps({k: v for k, v in r.items() if k != "wall_seconds"}, sort_keys=True)  # noqa: E731
    return strip(a) == strip(b)


def test_pipelined_replay_gives_the_same_record():
    path = TRACES / "exec.perf.txt.xz"
    assert _same(replay_trace(path, "slab", pipeline=True), replay_trace(path, "slab", pipeline=False))


def kmalloc_flood(tmp_path):
    """A trace that fills a 2 MiB kmem_map with kmallocs nobody frees (64 KiB each, from 60
    call sites: 60 malloc types, none at its limit), then goes on for a while.  (The bundled
    traces no longer do: their kmem_cache events go to kmem_map's vm_zones, in kernel_map.)"""
    lines = [f"  a 1 [00{i % 2}] {1 + i / 1e4:.6f}: kmem:kmalloc: call_site=site{i % 60}+0x1 "
             f"ptr=0x{0x100000 + i * 0x10000:x} bytes_req=65536 bytes_alloc=65536 gfp_flags=GFP_KERNEL"
             for i in range(120)]
    path = tmp_path / "flood.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_panic_stops_both_paths_alike_and_the_trace_is_still_counted(tmp_path):
    path = kmalloc_flood(tmp_path)
    kw = dict(physmem="16M", options={"vm_kmem_size": 2 << 20})
    a, b = (replay_trace(path, "kmem_map", pipeline=p, **kw) for p in (True, False))
    assert a["panic"] and "kmem_map too small" in a["panic"]
    assert _same(a, b)
    assert a["trace"] == {**count_trace(path).as_dict(), **{k: a["trace"][k] for k in ("would_sleep",
                                                                                       "folded_cpu_events", "path",
                                                                                       "sha256")}}


def test_one_backend_panicking_leaves_the_others_running(tmp_path):
    path = kmalloc_flood(tmp_path)
    small = {"vm_kmem_size": 2 << 20}
    both = replay_backends(path, [("kmem_map", small), ("slab", None)], physmem="64M")
    assert "kmem_map too small" in both[0]["panic"] and both[1]["panic"] is None
    assert _same(both[0], replay_trace(path, "kmem_map", physmem="64M", options=small))
    assert _same(both[1], replay_trace(path, "slab", physmem="64M"))


def synthetic_trace(n: int) -> str:
    """n kmalloc/kfree pairs on two CPUs, a quarter of the frees on the other CPU, with
    varied sizes and call sites: a stand-in for a real trace where none is at hand."""
    lines = []
    for i in range(n):
        ts, ptr, cpu = 100 + i * 1e-5, 0xffff888100000000 + (i % 97) * 0x1000 + (i % 13) * 64, i % 2
        lines.append(f"  cc1 {40 + i % 5} [{cpu:03d}] {ts:.6f}: kmem:kmalloc: call_site=f{i % 7}+0x1 "
                     f"ptr={ptr:#x} bytes_req={8 + i * 37 % 5000} bytes_alloc=8192 "
                     f"gfp_flags=GFP_KERNEL{'|__GFP_ZERO' if i % 3 == 0 else ''}\n")
        lines.append(f"  cc1 {40 + i % 5} [{cpu ^ (i % 4 == 0):03d}] {ts + 5e-6:.6f}: kmem:kfree: "
                     f"call_site=g+0x2 ptr={ptr:#x}\n")
    return "".join(lines)


def test_pipelined_replay_gives_the_same_record_on_a_synthetic_trace(tmp_path):
    path = tmp_path / "t.perf.txt"
    path.write_text(synthetic_trace(20_000))
    for backend in ("slab", "kmem_map"):
        a, b = (replay_trace(path, backend, pipeline=p) for p in (True, False))
        assert a["trace"]["events"] == 40_000 and a["trace"]["cross_cpu_frees"] == 5_000
        assert _same(a, b)


def test_a_gz_that_is_no_gzip_is_a_clear_error_in_both_modes(tmp_path):
    """The reader process sent BadGzipFile back as a RuntimeError: a traceback."""
    p = tmp_path / "t.perf.txt.gz"
    p.write_bytes(bytes(range(256)) * 20)
    for pipeline in (True, False):
        with pytest.raises(ValueError, match="t.perf.txt.gz: corrupt or truncated trace"):
            replay_trace(p, "bump", pipeline=pipeline)
    r = subprocess.run([KALLOC, "replay", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "corrupt or truncated" in r.stderr


@pytest.mark.parametrize("text", ["", "hello\n" * 3, LINES[3] + "\n"])
def test_a_trace_without_kmem_events_is_an_error(tmp_path, text):
    """An empty file, text that is no trace, or kmem lines all damaged: nothing to compare,
    and an all-zero table would look like a result."""
    p = tmp_path / "t.txt"
    p.write_text(text)
    for pipeline in (True, False):
        with pytest.raises(ValueError, match="no kmem event to replay") as e:
            replay_trace(p, "bump", pipeline=pipeline)
    assert ("not-a-pointer" in str(e.value)) == ("kfree" in text)
    r = subprocess.run([KALLOC, "replay", "-"], input=text, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "no kmem event" in r.stderr


@pytest.mark.parametrize("damage", ["truncated", "corrupt"])
def test_a_damaged_compressed_trace_is_a_clear_error(tmp_path, damage):
    data = bytearray(lzma.compress(synthetic_trace(20_000).encode()))
    assert len(data) > 20_000
    if damage == "truncated":
        data = data[:20000]
    else:
        data[5000:5010] = b"0123456789"
    p = tmp_path / "t.perf.txt.xz"
    p.write_bytes(bytes(data))
    for pipeline in (True, False):
        with pytest.raises(ValueError, match="corrupt or truncated trace"):
            replay_trace(p, "slab", pipeline=pipeline)
    r = subprocess.run([KALLOC, "replay", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "corrupt or truncated" in r.stderr


@pytest.mark.parametrize("backend", ["slab", "kmem_map", "slub"])
def test_cache_events_go_to_the_backends_cache_of_that_name(tmp_path, backend):
    lines = LINES[:3] + [
        "  a 1 [000] 1.000500: kmem:kmem_cache_alloc: call_site=g+0x2 ptr=0xffff000000003000 name=filp bytes_req=184 bytes_alloc=192 gfp_flags=GFP_KERNEL node=-1 accounted=true",
        "  a 1 [000] 1.000600: kmem:kmem_cache_free: call_site=h+0x3 ptr=0xffff000000002000 name=dentry",
        "  a 1 [001] 1.000700: kmem:kfree: call_site=h+0x3 ptr=0xffff000000003000",   # kfree of a cache object
    ]
    rec = replay_trace(small_trace(tmp_path, lines), backend)
    rows = {r["name"]: r for r in rec["caches"]}
    assert set(rows) == {"dentry", "filp"} and rec["panic"] is None
    assert (rows["dentry"]["kernel_slab_size"], rows["filp"]["kernel_slab_size"]) == (192, 192)
    assert rows["dentry"]["object_size"] == 192 and rows["filp"]["object_size"] == 184
    assert all(r["active_objs"] == 0 for r in rows.values())
    assert rec["ops"]["malloc"] == 3 and rec["ops"]["free"] == 3
    if backend == "slub":                        # filp without its kernel flags: 184 bytes, not 192
        assert rows["filp"]["slab_size"] == 184 and rows["dentry"]["slab_size"] == 192
