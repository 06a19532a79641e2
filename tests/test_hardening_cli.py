"""Issue 20, the command line: every bad input is one line on stderr and exit status 2, with
no traceback, before any work is done; output is escaped and JSON is strict.

The commands run in this process (``cli.main``), which is what the script calls, so that
many cases and a fuzz test fit the suite's time."""

import gzip
import json
import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalloc import cli
from kalloc.export import scale_rows, scale_table, to_json

PERF = ("perf 3286 [000] 1588.589790: kmem:kmalloc: call_site={site} ptr=0xffff888102bc56c0 bytes_req=32 "
        "bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false\n"
        "perf 3286 [001] 1588.589875: kmem:kfree: call_site=do_x+0x88 ptr=0xffff888102bc56c0\n")


@pytest.fixture
def no_work(monkeypatch):
    """Any run or replay started is a failure: the input had to be refused before."""
    def work(*_a, **_k):
        raise AssertionError("work started before the input was checked")
    monkeypatch.setattr(cli, "run_grid", work)
    monkeypatch.setattr(cli, "replay_backends", work)


def refused(capsys, *args, msg: str) -> str:
    """The command fails as promised; its one line of stderr, which contains ``msg``."""
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", (args, out, err)
    assert err.count("\n") == 1 and err.startswith("kalloc: ") and "Traceback" not in err, err
    assert msg in err, err
    return err


@pytest.fixture
def toml(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "c.toml"
        path.write_text(text)
        return str(path)
    return write


@pytest.mark.parametrize("args,msg", [
    # 1: bounded resources
    (("info", "--arch", "amd64", "--physmem", "64T"), "exceeds the 4,096 GiB an amd64 kernel may have"),
    (("info", "--arch", "amd64", "--physmem", "999999T"), "exceeds the 4,096 GiB"),
    (("compare", "--physmem", "8G"), "exceeds the 4 GiB an i386 kernel may have"),
    (("compare", "--config", "/dev/zero"), "is larger than 1 MiB"),
    (("compare", "--config", "/"), "cannot be read"),
    # 2: scoped options and parameters nobody declares
    (("info", "--set", "slab.nosuch=1"), "unknown option 'nosuch' for backend 'slab'"),
    (("compare", "--set", "kmem_map.zone_cache=1"), "unknown option 'zone_cache' for backend 'kmem_map'"),
    (("compare", "--param", "net.nosuch=1"), "unknown parameter 'nosuch' for workload 'net'"),
    # 3: numbers
    (("scenario", "isa-dma", "--scale", "1e308"), "scale must be positive and finite"),
    (("scenario", "isa-dma", "--scale", "nan"), "scale must be positive and finite"),
    (("info", "--set", "fail_probability=nan"), "must be a finite number, got nan"),
    (("info", "--set", "fail_probability=inf"), "must be a finite number"),
    (("compare", "--cost", "clock_hz=0"), "cost 'clock_hz' must be an integer from 1"),
    (("compare", "--cost", "op_base=-1"), "cost 'op_base' must be an integer from 0"),
    (("compare", "--cost", "op_base=1e3"), "cost 'op_base'"),
    (("compare", "--cost", f"clock_hz={10 ** 30}"), "cost 'clock_hz'"),
    (("compare", "--param", "tty.chars=nan"), "tty"),
    # 5: silently accepted before
    (("backends", "--format", ""), "unknown format ''"),
    (("workloads", "--format", ""), "unknown format ''"),
    (("compare", "--ncpus", "1,,2"), "ncpus has an empty item in '1,,2'"),
    (("compare", "--ncpus", "1,2,"), "ncpus has an empty item"),
    (("compare", "--backends", "slab,,kmem_map"), "backends has an empty item"),
    (("compare", "--set", "zone_cache=4\nredzone=16"), "--set 'zone_cache': the value holds a newline"),
    (("compare", "--param", "bursts=2\nx=1"), "--param 'bursts'"),
    (("compare", "--config", ""), "config file '' not found"),
    (("run", "--workload", "tty", "--plot", "/dev/full"), "No space left on device"),
    # 6: the inputs of a long command
    (("compare", "--trace", "/nonexistent.perf.txt"), "trace file not found"),
    (("compare", "--trace", "/"), "Is a directory"),
    # a boot-time refusal comes before the grid too
    (("compare", "--set", "slab.zone_cache=0"), "zone_cache=0 needs zone_trim=malloc"),
    # 8: control characters in what is printed
    (("compare", "--config", "/no\nsuch\x1b[2J"), "'/no\\nsuch\\x1b[2J' not found"),
])
def test_bad_input_is_one_line_exit_2_and_no_work(capsys, no_work, args, msg):
    refused(capsys, *args, msg=msg)


@pytest.mark.parametrize("text,msg", [
    ('arch = ["i386"]', "unknown arch ['i386']"),
    ("[backend]\nx = 1", "backends lists {'x': 1}: a backend is named by a string"),
    ("workloads = [1]", "workloads lists 1"),
    ("[costs]\npreset = [1]", "unknown cost preset [1]"),
    ("format = 1", "unknown format 1"),
    ("executor = []", "unknown executor []"),
    ("[options.slab.deeper]\nx = 1", "unknown option 'deeper' for backend 'slab' in 'slab.deeper'"),
    ("[options.kmem_map]\nzone_cache = 1", "unknown option 'zone_cache' for backend 'kmem_map'"),
    ("[options]\nfail_probability = nan", "must be a finite number, got nan"),
    ("[costs]\nclock_hz = 0", "cost 'clock_hz'"),
    ("ncpus = [[1]]", "ncpus must be an integer"),
    ("physmem = [64]", "physmem"),
])
def test_wrong_toml_types_name_the_key(capsys, no_work, toml, text, msg):
    refused(capsys, "compare", "--config", toml(text), msg=msg)


def test_an_unreadable_config_file_is_named(capsys, tmp_path):
    path = tmp_path / "dir.toml"
    path.mkdir()
    refused(capsys, "info", "--config", str(path), msg=f"config file '{path}' cannot be read")


def test_a_corrupt_trace_fails_before_the_grid(capsys, monkeypatch, tmp_path):
    path = tmp_path / "t.perf.txt.gz"
    path.write_bytes(gzip.compress(PERF.format(site="f+0x1").encode())[:-12])
    monkeypatch.setattr(cli, "run_grid", lambda *a, **k: pytest.fail("the grid ran first"))
    refused(capsys, "compare", "--trace", str(path), "--workloads", "tty", msg="corrupt or truncated trace")


def test_plot_without_matplotlib_fails_before_any_run(capsys, no_work, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)          # import matplotlib: ImportError
    refused(capsys, "compare", "--plot", str(tmp_path / "p.png"), msg="plotting needs matplotlib")


def test_terminal_escapes_from_a_trace_are_not_printed_raw(capsys, tmp_path):
    path = tmp_path / "t.perf.txt"
    path.write_text(PERF.format(site="\x1b]0;owned\x07f+0x1\x1b[2J"))
    assert cli.main(["replay", str(path), "--backends", "slab", "--no-pipeline"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07f" in out


def test_json_output_is_strict():
    text = to_json([{"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": math.nan}}])
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c}")) == [
        {"a": None, "b": [None, None, 1.5], "c": {"d": None}}]


def _summary(backend, ncpus, thr, panics):
    row = {"workload": "w", "ncpus": ncpus, "backend": backend, "runs": 1, "seeds": [0], "panics": panics}
    if thr is not None:
        stat = {"mean": thr, "stdev": 0.0, "min": thr, "max": thr}
        row.update(throughput_ops_per_mcycle=stat, makespan_cycles=stat, lock_wait_cycles=stat)
    return row


@pytest.mark.parametrize("first", (None, 0.0, 10.0))
def test_scale_shows_the_panics_and_survives_a_cell_without_throughput(first):
    rows = scale_rows([_summary("a", 1, first, 1), _summary("a", 2, 20.0, 0),
                       _summary("b", 1, 10.0, 0), _summary("b", 2, None, 1)])
    table = scale_table(rows)
    head, one, two = table.splitlines()[0], table.splitlines()[2], table.splitlines()[3]
    assert head.split()[-1] == "panics"
    assert one.endswith("a 1") and two.endswith("b 1")
    assert json.loads(to_json(rows))


def test_a_real_scale_with_a_panicking_cell(capsys):
    """bump never reuses memory: in 4 MiB, fs on 2 CPUs runs it out (a panic)."""
    assert cli.main(["scale", "--backends", "slab,bump", "--workloads", "fs", "--physmem", "4M",
                     "--ncpus", "1,2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[-2:] == ["bump", "1"] and "panics" in lines[0]


# --- fuzz: argument handling -----------------------------------------------------------------
_OPTION = st.sampled_from(["--ncpus", "--physmem", "--seed", "--arch", "--set", "--format", "--backends",
                           "--workloads", "--repeat", "--jobs", "--param", "--cost", "--config", "--output",
                           "--executor", "--trace"])
_TEXT = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12),
    st.sampled_from(["", ",", "1,,2", "nan", "inf", "-1", "0", "1e308", "64T", "2**70", "slab.nosuch=1",
                     "kmem_map.zone_cache=1", "a=1\nb=2", "clock_hz=0", "fail_probability=nan",
                     "zone_cache=[1]", "preset=[1]", "x=", "=1", "/dev/zero", "/", "\x1b[2J", "1" * 40]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["info", "compare", "scale", "backends"]),
       pairs=st.lists(st.tuples(_OPTION, _TEXT), min_size=1, max_size=3))
def test_fuzz_bad_arguments_are_one_line_before_any_work(capsys, monkeypatch, tmp_path, command, pairs):
    """Whatever the arguments: exit 0 or 2, and a failure is one escaped line with no
    traceback; no run starts (the grid and replay are stubbed to stop at once)."""
    monkeypatch.chdir(tmp_path)                  # an accepted --output lands here, not in the repo
    started = []

    def work(*_a, **_k):
        started.append(1)
        raise KeyboardInterrupt                  # input accepted: stop here (exit 130)
    monkeypatch.setattr(cli, "run_grid", work)
    monkeypatch.setattr(cli, "replay_backends", work)
    args = [command] + [x for pair in pairs for x in pair]
    rc = cli.main(args)
    out, err = capsys.readouterr()
    if rc == 2:
        assert err.count("\n") == 1 and err.startswith("kalloc: ") and "\x1b" not in err, (args, err)
        assert not started, args
    else:
        assert rc in (0, 130), (args, rc, err)
