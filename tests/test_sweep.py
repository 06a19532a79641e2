"""kalloc sweep and kalloc sensitivity (kalloc.sweep): keys, specs, the grid, ratios,
crossovers, the commands' JSON and their bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kalloc import costs as kcosts
from kalloc.cli import main
from kalloc.costs import CostModel
from kalloc.executors import run_grid
from kalloc.harness import RunSpec, run_one
from kalloc.sweep import (METRICS, check_metric, crossovers, parse_vary, ratio_points, resolve_key, run_sweep,
                          sensitivity, sweep_specs)

KALLOC = shutil.which("kalloc") or str(Path(sys.executable).parent / "kalloc")
TINY = ["--workloads", "prodcons", "--param", "prodcons.objects=200", "--param", "prodcons.batch=8",
        "--ncpus", "2", "--warmup", "0"]
SWEEP = ["sweep", *TINY, "--vary", "cost.ipi_send=300:1500:3"]

@pytest.fixture
def ranges(monkeypatch):
    """A few prices only, to keep the sensitivity runs short: an IPI price and a lock price
    that matter at 2 CPUs, and a price that a prodcons run never pays (TLB shootdowns are the
    sync model's)."""
    few = {k: kcosts.RANGES[k] for k in ("ipi_send", "lock_handoff", "tlb_shootdown")}
    monkeypatch.setattr(kcosts, "RANGES", few, raising=False)
    return few


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- SPEC parsing ----------------------------------------------------------------------------------

def test_lists_and_ranges():
    assert parse_vary("cost.ipi_send=300:1500:3") == ("cost.ipi_send", [300, 900, 1500])
    assert parse_vary("cost.ipi_send=100,250, 400") == ("cost.ipi_send", [100, 250, 400])
    assert parse_vary("ncpus=1:4:4") == ("ncpus", [1, 2, 3, 4])
    # integer keys round to integers, endpoints exact
    assert parse_vary("cost.lock_handoff=100:500:10")[1] == [100, 144, 189, 233, 278, 322, 367, 411, 456, 500]
    # a float key gets floats; strings and booleans take lists
    assert parse_vary("fail_probability=0:0.5:3")[1] == [0.0, 0.25, 0.5]
    assert parse_vary("slab.remote_free=ipi,passive")[1] == ["ipi", "passive"]
    assert parse_vary("page_policy=4.8,2003-09-14")[1] == ["4.8", "2003-09-14"]
    assert parse_vary("invariants=true,False")[1] == [True, False]
    assert parse_vary("net.large_fraction=0.1,1")[1] == [0.1, 1.0]


@pytest.mark.parametrize("text,named", [
    ("cost.ipi_send=1.5:3:3", "cost.ipi_send"),         # integer key, float bound
    ("cost.ipi_send=300:1500", "cost.ipi_send"),        # not a list, not a range: '300:1500' is a word
    ("cost.ipi_send=300:1500:1", "cost.ipi_send"),      # one point
    ("cost.ipi_send=300:300:3", "cost.ipi_send"),
    ("cost.ipi_send=1:3:5", "cost.ipi_send"),           # integer points repeat
    ("cost.ipi_send=300,300", "cost.ipi_send"),
    ("cost.ipi_send=-5,10", "cost.ipi_send"),
    ("cost.ipi_send=a,b", "cost.ipi_send"),
    ("cost.ipi_send=1,,2", "cost.ipi_send"),
    ("cost.ipi_send=", "cost.ipi_send"),
    ("slab.remote_free=1:3:3", "slab.remote_free"),     # a range of words
    ("ncpus=0,2", "ncpus"),
    ("ncpus=1,2000", "ncpus"),
    ("cost.nosuch=1,2", "cost.nosuch"),
    ("nosuch=1,2", "nosuch"),
    ("slab.nosuch=1,2", "slab.nosuch"),
    ("prodcons.nosuch=1,2", "prodcons.nosuch"),
    ("param.nosuch=1,2", "param.nosuch"),
    ("bogus.thing=1,2", "bogus.thing"),
])
def test_bad_specs_name_the_key(text, named):
    with pytest.raises(ValueError, match=named.replace(".", r"\.")):
        parse_vary(text)


def test_key_without_spec():
    with pytest.raises(ValueError, match="KEY=SPEC"):
        parse_vary("cost.ipi_send")


# --- keys resolve to what they set ------------------------------------------------------------------

def test_every_key_kind_resolves():
    b, w = ("slab", "kmem_map"), ("prodcons", "tty")
    assert resolve_key("cost.ipi_send", b, w).kind == "cost"
    assert resolve_key("ncpus", b, w).kind == "ncpus"
    k = resolve_key("slab.zone_cache", b, w)
    assert (k.kind, k.field, k.scopes, k.type) == ("option", "zone_cache", ("slab",), int)
    assert resolve_key("remote_free", b, w).scopes == ("slab",)            # unscoped: who declares it
    assert resolve_key("page_policy", b, w).scopes == ("slab", "kmem_map")  # a common option: both
    k = resolve_key("prodcons.objects", b, w)
    assert (k.kind, k.field, k.scopes) == ("param", "objects", ("prodcons",))
    assert resolve_key("param.work_cycles", b, w).scopes == ("prodcons",)
    with pytest.raises(ValueError, match="not selected"):
        resolve_key("bump.arena", b, w)
    with pytest.raises(ValueError, match="not selected"):
        resolve_key("net.packets", b, w)


def test_sweep_specs_apply_each_kind():
    pairs = sweep_specs(["cost.ipi_send=100,200", "slab.zone_cache=4,8", "page_policy=4.8",
                         "prodcons.objects=300", "ncpus=1,2"],
                        ["slab", "kmem_map"], ["prodcons"], ncpus=4, seeds=[0, 1],
                        costs={"lock_handoff": 7}, options={"slab": {"remote_free": "passive"}}, warmup=0)
    assert len(pairs) == 2 * 2 * 2 * 2 * 2                   # ipi_send x zone_cache x ncpus x seeds x backends
    point, spec = pairs[0]
    assert point == {"cost.ipi_send": 100, "slab.zone_cache": 4, "page_policy": "4.8", "prodcons.objects": 300,
                     "ncpus": 1}
    assert spec == RunSpec("slab", "prodcons", 1, 0, "64M", "i386",
                           {"remote_free": "passive", "zone_cache": 4, "page_policy": "4.8"}, {"objects": 300},
                           {"lock_handoff": 7, "ipi_send": 100}, 0)
    km = pairs[1][1]
    assert km.backend == "kmem_map" and km.options == {"page_policy": "4.8"}    # slab.zone_cache is slab's
    assert [s.seed for _, s in pairs[:4]] == [0, 0, 1, 1]                         # backends side by side
    assert [p["ncpus"] for p, _ in pairs[::4]][:2] == [1, 2]                      # the last key varies fastest


def test_sweep_specs_check_values_before_running():
    with pytest.raises(ValueError, match=r"--vary prodcons\.batch=0"):
        sweep_specs(["prodcons.batch=0,8"], ["slab"], ["prodcons"])               # LIMITS: batch >= 1
    with pytest.raises(ValueError, match=r"--vary slab\.zone_limit"):
        sweep_specs(["slab.zone_limit=constant,nosuch"], ["slab"], ["prodcons"])
    with pytest.raises(ValueError, match="given twice"):
        sweep_specs(["ncpus=1,2", "ncpus=3,4"], ["slab"], ["prodcons"])
    with pytest.raises(ValueError, match="sets what --vary remote_free"):
        sweep_specs(["remote_free=ipi,passive", "slab.remote_free=ipi"], ["slab"], ["prodcons"])


# --- ratios and crossovers on synthetic points --------------------------------------------------------

def _pts(key, pairs, **fixed):
    return [{"point": {**fixed, key: x} if fixed else {key: x}, "value": r} for x, r in pairs]


def test_crossover_of_a_known_line():
    # r = 0.5 + x / 1000 crosses 1 at x = 500; sampled at 0, 400, 800
    pts = _pts("cost.x", [(0, 0.5), (400, 0.9), (800, 1.3)])
    assert crossovers(pts, ["cost.x"]) == [{"key": "cost.x", "value": pytest.approx(500.0),
                                            "between": [400, 800], "at": {}}]
    # the order the points come in does not matter; a descending line crosses too
    pts = _pts("k", [(800, 0.7), (0, 1.5), (400, 1.1)])
    assert crossovers(pts, ["k"])[0]["value"] == pytest.approx(500.0)


def test_no_crossover_in_range():
    assert crossovers(_pts("k", [(0, 1.2), (1, 1.1), (2, 1.01)]), ["k"]) == []
    assert crossovers(_pts("k", [(0, 0.2), (1, 0.9)]), ["k"]) == []
    assert crossovers([], ["k"]) == []


def test_crossover_along_each_key_with_the_others_fixed():
    # r = a + b / 10 on a 2 x 3 grid: along a it crosses 1 at a = 1 (b = 0) and a = 0.6 (b = 4),
    # not at b = 8 (1.3 and 2.8); along b only where a = 0.5, at b = 5
    pts = [{"point": {"a": a, "b": b}, "value": a + b / 10} for a in (0.5, 2.0) for b in (0, 4, 8)]
    assert crossovers(pts, ["a", "b"]) == [
        {"key": "a", "value": pytest.approx(1.0), "between": [0.5, 2.0], "at": {"b": 0}},
        {"key": "a", "value": pytest.approx(0.6), "between": [0.5, 2.0], "at": {"b": 4}},
        {"key": "b", "value": pytest.approx(5.0), "between": [4, 8], "at": {"a": 0.5}}]
    # several workloads: each its own line, named
    both = [{**e, "workload": w} for w in ("tty", "net") for e in _pts("k", [(0, 0.5), (2, 1.5)])]
    assert [(x["workload"], x["value"]) for x in crossovers(both, ["k"])] == [("tty", 1.0), ("net", 1.0)]


def test_ratio_points_mean_over_seeds_per_workload():
    recs = [{"workload": w, "point": {"k": k}, "backend": b, "seed": s, "sim": {"throughput_ops_per_mcycle": v}}
            for w, k, b, s, v in [("tty", 1, "A", 0, 2.0), ("tty", 1, "A", 1, 4.0), ("tty", 1, "B", 0, 3.0),
                                  ("tty", 1, "B", 1, 3.0), ("net", 1, "A", 0, 1.0), ("net", 1, "B", 0, 4.0)]]
    assert ratio_points(recs, "A", "B", "sim.throughput_ops_per_mcycle") == [
        {"point": {"k": 1}, "workload": "tty", "value": 1.0}, {"point": {"k": 1}, "workload": "net", "value": 0.25}]
    one = [r for r in recs if r["workload"] == "tty"]
    assert ratio_points(one, "B", "A", "sim.throughput_ops_per_mcycle") == [{"point": {"k": 1}, "value": 1.0}]


def test_metric_keys():
    for m in ("sim.throughput_ops_per_mcycle", "latency.malloc.p99", "memory.peak_growth_bytes",
              "sim.cycles_per_op", "counters.ipis", "workload_counts.drops"):
        assert check_metric(m) == m
    for m in ("sim", "sim.nosuch", "latency.malloc", "latency.nosuch.p99", "nosuch.x", "", "counters."):
        with pytest.raises(ValueError, match="metric"):
            check_metric(m)


def test_metric_schema_is_the_records():
    """Every number of a real record's fixed sections is a known metric, and nothing more."""
    rec = run_one(RunSpec("slab", "prodcons", 2, params={"objects": 200, "batch": 8}, warmup=0))
    for section, keys in METRICS.items():
        if isinstance(keys, dict):
            assert set(rec[section]) == set(keys)
            assert all(set(rec[section][k]) == set(v) for k, v in keys.items())
        else:
            assert set(rec[section]) == set(keys), section


# --- the command ---------------------------------------------------------------------------------------

def test_sweep_json_with_ratio():
    p = subprocess.run([KALLOC, *SWEEP, "--ratio", "slab/kmem_map", "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert set(out) == {"records", "ratio"}
    recs = out["records"]
    assert [(r["point"], r["backend"]) for r in recs] == [
        ({"cost.ipi_send": v}, b) for v in (300, 900, 1500) for b in ("slab", "kmem_map")]
    assert all(r["wall_seconds"] is None and r["ncpus"] == 2 and r["panic"] is None for r in recs)
    ratio = out["ratio"]
    assert ratio["of"] == "slab/kmem_map" and ratio["metric"] == "sim.throughput_ops_per_mcycle"
    thr = {(r["point"]["cost.ipi_send"], r["backend"]): r["sim"]["throughput_ops_per_mcycle"] for r in recs}
    assert ratio["points"] == [{"point": {"cost.ipi_send": v}, "value": thr[v, "slab"] / thr[v, "kmem_map"]}
                               for v in (300, 900, 1500)]
    assert isinstance(ratio["crossover"], list)
    assert ratio["crossover"] == crossovers(ratio["points"], ["cost.ipi_send"])
    # the price is the one that moved: slab's remote frees send IPIs, so its throughput falls
    assert thr[300, "slab"] > thr[1500, "slab"]


def test_sweep_is_deterministic_and_executor_independent(capsys):
    args = [*SWEEP, "--vary", "ncpus=1,2", "--format", "json", "--ratio", "slab/kmem_map"]
    runs = [cli(capsys, *args, *extra) for extra in ([], [], ["--jobs", "2"])]
    assert all(code == 0 for code, _, _ in runs)
    assert runs[0][1] == runs[1][1] == runs[2][1]
    pytest.importorskip("distributed")
    pairs = sweep_specs(["cost.ipi_send=300,1500"], ["slab", "kmem_map"], ["prodcons"], 2,
                        params={"prodcons": {"objects": 200, "batch": 8}}, warmup=0)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rs]
    assert strip(run_sweep(pairs, 2, executor="dask")) == strip(run_sweep(pairs, 1))


def test_sweep_table_csv_plot_and_config(capsys, tmp_path):
    code, out, err = cli(capsys, *SWEEP, "--ratio", "slab/kmem_map")
    assert code == 0, err
    assert "slab/kmem_map" in out and "cost.ipi_send" in out
    assert "crossover" in out.splitlines()[-2]              # named in a line under the table
    code, out, _ = cli(capsys, *SWEEP, "--format", "csv")
    assert code == 0 and "point.cost.ipi_send" in out.splitlines()[0]
    png = tmp_path / "sweep.png"
    code, _, err = cli(capsys, *SWEEP, "--ratio", "slab/kmem_map", "--plot", str(png))
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"
    cfg = tmp_path / "s.toml"
    cfg.write_text('backends = ["slab", "kmem_map"]\n[sweep]\nratio = "kmem_map/slab"\nmetric = "sim.cycles_per_op"\n'
                   '[sweep.vary]\ncost.ipi_send = "300,1500"\n')        # dotted, unquoted
    code, out, err = cli(capsys, "sweep", *TINY, "--config", str(cfg), "--format", "json")
    assert code == 0, err
    r = json.loads(out)["ratio"]
    assert (r["of"], r["metric"], [p["point"] for p in r["points"]]) == (
        "kmem_map/slab", "sim.cycles_per_op", [{"cost.ipi_send": 300}, {"cost.ipi_send": 1500}])
    cfg.write_text('[sweep]\nvary = ["cost.ipi_send=300,1500"]\n')
    code, out, err = cli(capsys, "sweep", *TINY, "--config", str(cfg), "--format", "json", "--vary", "ncpus=1,2")
    assert code == 0, err                                  # the command line's --vary wins
    assert [r["point"] for r in json.loads(out)][::2] == [{"ncpus": 1}, {"ncpus": 2}]


@pytest.mark.parametrize("extra,named", [
    (["--vary", "cost.nosuch=1,2"], "cost.nosuch"),
    (["--vary", "nosuch=1,2"], "nosuch"),
    (["--vary", "cost.ipi_send=1:2"], "cost.ipi_send"),
    (["--vary", "prodcons.batch=0:8:3"], "prodcons.batch"),
    (["--vary", "ncpus=1,2", "--vary", "ncpus=4"], "ncpus"),
    (["--vary", "cost.ipi_send=300,1500", "--ratio", "slab/bump"], "bump"),
    (["--vary", "cost.ipi_send=300,1500", "--ratio", "slab"], "A/B"),
    (["--vary", "cost.ipi_send=300,1500", "--metric", "sim.nosuch"], "sim.nosuch"),
    (["--vary", "cost.ipi_send=300,1500", "--metric", "counters.nosuch"], "counters.nosuch"),
    ([], "--vary"),
])
def test_sweep_bad_input_is_one_line_exit_2(capsys, extra, named):
    code, out, err = cli(capsys, "sweep", *TINY, *extra)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("kalloc: ") and named in err


def test_bad_sweep_table_in_a_file_is_an_error_for_every_command(capsys, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[sweep]\nvary = ["cost.ipi_send=300,1500"]\nratios = "slab/kmem_map"\n')
    for cmd in ("sweep", "compare"):
        code, _, err = cli(capsys, cmd, *TINY, "--config", str(cfg))
        assert code == 2 and "ratios" in err and err.count("\n") == 1


# --- sensitivity -------------------------------------------------------------------------------------

def test_sensitivity_json_shape_and_order(capsys, ranges):
    code, out, err = cli(capsys, "sensitivity", "--workload", "prodcons", "--backends", "slab,kmem_map",
                         "--ncpus", "2", "--param", "objects=200", "--param", "batch=8", "--warmup", "0",
                         "--format", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["price"] for r in rows) == sorted(ranges)
    keys = {"price", "low", "high", "value_low", "value_nominal", "value_high", "flips"}
    nominal = CostModel()
    for r in rows:
        assert keys <= set(r)
        assert (r["low"], r["high"]) == ranges[r["price"]] and r["nominal"] == getattr(nominal, r["price"])
        assert isinstance(r["flips"], bool)
        side = [v >= 1 for v in (r["value_low"], r["value_nominal"], r["value_high"])]
        assert r["flips"] == (len(set(side)) > 1)
    swings = [abs(r["value_high"] - r["value_low"]) for r in rows]
    assert swings == sorted(swings, reverse=True)
    assert rows[-1]["price"] == "tlb_shootdown" and swings[-1] == 0       # a price this run never pays
    assert rows[0]["price"] == "ipi_send" and swings[0] > 0
    assert len({r["value_nominal"] for r in rows}) == 1
    # the nominal is the configured model's: --cost moves it, RANGES stay
    code, out, _ = cli(capsys, "sensitivity", "--workload", "prodcons", "--param", "objects=200",
                       "--param", "batch=8", "--warmup", "0", "--cost", "ipi_send=1000", "--format", "json")
    assert code == 0 and {r["price"]: r["nominal"] for r in json.loads(out)}["ipi_send"] == 1000


def test_sensitivity_table_plot_and_api(capsys, ranges, tmp_path):
    png = tmp_path / "tornado.png"
    code, out, err = cli(capsys, "sensitivity", "--workload", "prodcons", "--param", "objects=200",
                         "--param", "batch=8", "--warmup", "0", "--plot", str(png))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[0] == "price" and lines[2].split()[0] == "ipi_send" and "|" in lines[2]
    assert png.read_bytes()[:4] == b"\x89PNG"
    rows = sensitivity("prodcons", "slab", "kmem_map", 1, "sim.throughput_ops_per_mcycle",
                       params={"objects": 200, "batch": 8}, warmup=0, ranges={"ipi_send": (300, 3000)})
    assert rows[0]["value_low"] == rows[0]["value_high"]       # no IPIs on one CPU


@pytest.mark.parametrize("extra,named", [
    (["--backends", "slab,kmem_map,bump"], "two backends"),
    (["--workloads", "prodcons,tty"], "one workload"),
    (["--metric", "nosuch.x"], "nosuch.x"),
])
def test_sensitivity_bad_input(capsys, ranges, extra, named):
    args = extra if "--workloads" in extra else ["--workload", "prodcons", *extra]
    code, _, err = cli(capsys, "sensitivity", *args)
    assert code == 2 and err.count("\n") == 1 and named in err


def test_equal_runs_run_once():
    """slab.remote_free leaves kmem_map's runs equal across its values: run once, recorded twice."""
    from kalloc.sweep import distinct_specs
    pairs = sweep_specs(["slab.remote_free=ipi,passive"], ["slab", "kmem_map"], ["prodcons"], 2,
                        params={"prodcons": {"objects": 200, "batch": 8}}, warmup=0)
    assert len(pairs) == 4 and len(distinct_specs(pairs)) == 3
    recs = run_sweep(pairs)
    km = [{k: v for k, v in r.items() if k not in ("point", "wall_seconds")} for r in recs if r["backend"] == "kmem_map"]
    assert km[0] == km[1] and [r["point"] for r in recs][1::2] == [{"slab.remote_free": "ipi"},
                                                                   {"slab.remote_free": "passive"}]
