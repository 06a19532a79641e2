"""The notebook API (kalloc.experiment, kalloc.to_dataframe), one TOML file for every command,
and a grid that goes on past a cell's deadlock."""

import json
import sys

import pytest

import kalloc
from kalloc import cli, plugins
from kalloc import workload as wl
from kalloc.export import compare_table

TTY = {"tty": {"bursts": 5}}


def test_compare_gives_the_records_the_cli_prints(capsys):
    recs = kalloc.experiment.compare(backends="bump,slab[zone_cache=4]", workloads=["tty"], ncpus=[1, 2],
                                     params=TTY, repeat=2)
    assert cli.main(["compare", "--backends", "bump,slab[zone_cache=4]", "--workloads", "tty", "--ncpus", "1,2",
                     "--param", "bursts=5", "--repeat", "2", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(kalloc.export.to_json(recs))
    assert [r["wall_seconds"] for r in recs] == [None] * 8


def test_run_scale_and_replay_take_the_same_arguments(tmp_path):
    [rec] = kalloc.experiment.run(backend="slab", workload="tty", ncpus=2, params=TTY, warmup=0,
                                  costs={"ipi_send": 10}, options={"slab.zone_cache": 4}, timing=True)
    assert rec["costs"]["ipi_send"] == 10 and rec["options"]["zone_cache"] == 4 and rec["run"]["warmup"] == 0
    assert rec["wall_seconds"] > 0
    recs = kalloc.experiment.scale(backends=["kmem_map", "bump"], workloads="tty", ncpus=[1, 2], params=TTY)
    assert [(r["backend"], r["ncpus"]) for r in recs] == [("kmem_map", 1), ("bump", 1), ("kmem_map", 2), ("bump", 2)]
    trace = tmp_path / "t.txt"
    trace.write_text("  a 1 [000] 1.000000: kmem:kmalloc: call_site=f+0x1 ptr=0xffff000000001000 bytes_req=100 "
                     "bytes_alloc=128 gfp_flags=GFP_KERNEL node=-1 accounted=false\n" * 3)
    recs = kalloc.experiment.replay(str(trace), backends="bump,kmem_map", ncpus=1)
    assert [r["variant"] for r in recs] == ["bump", "kmem_map"] and recs[0]["trace"]["events"] == 3


@pytest.mark.parametrize("call,kwargs,msg", [
    ("compare", {"backend": "nope"}, "unknown backend 'nope'"),
    ("compare", {"colour": 1}, "unknown argument(s) colour"),
    ("run", {"backends": "bump,slab"}, "choose one with --backend NAME"),
    ("scale", {"trace": "x"}, "unknown argument(s) trace"),
    ("replay", {"workload": "tty"}, "unknown argument(s) workload"),
])
def test_bad_arguments_are_the_cli_s_errors(call, kwargs, msg):
    args = ("t.txt",) if call == "replay" else ()
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        getattr(kalloc.experiment, call)(*args, **kwargs)


def test_a_section_for_an_unselected_backend_is_a_warning():
    with pytest.warns(UserWarning, match="'kmem_map.vm_kmem_size' is for backend 'kmem_map'"):
        kalloc.experiment.run(backend="bump", workload="tty", params=TTY,
                              options={"kmem_map": {"vm_kmem_size": 1 << 24}})


def test_to_dataframe_flattens_records():
    recs = kalloc.experiment.compare(backends="bump,slab", workloads="tty", ncpus=1, params=TTY)
    df = kalloc.to_dataframe(recs)
    assert list(df["variant"]) == ["bump", "slab"] and df["sim.throughput_ops_per_mcycle"].gt(0).all()
    assert "costs.ipi_send" in df.columns and "provenance.kalloc" in df.columns


def test_to_dataframe_without_pandas_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ValueError, match=r"pip install 'kalloc\[pandas\]'"):
        kalloc.to_dataframe([])


# --- one TOML file serves every command ------------------------------------------------------------

FILE = """backends = ["slab", "kmem_map", "passive"]
workloads = ["tty", "net"]
ncpus = [1, 2]
[options.kmem_map]
vm_kmem_size = 33554432
[options.slab]
zone_cache = 8
[params.tty]
bursts = 5
[params.net]
packets = 50
[[variant]]
name = "passive"
backend = "slab"
options = { remote_free = "passive" }
"""


def kalloc_cli(capsys, *args):
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_one_file_serves_run_and_info_given_a_choice(tmp_path, capsys):
    f = tmp_path / "k.toml"
    f.write_text(FILE)
    rc, _, err = kalloc_cli(capsys, "run", "--config", str(f))
    assert rc == 2 and "this command takes one backend, not 3 (slab, kmem_map, passive): choose one with " \
                       "--backend NAME" in err
    rc, out, err = kalloc_cli(capsys, "run", "--config", str(f), "--backend", "bump", "--workload", "tty",
                              "--ncpus", "1", "--format", "json")
    assert rc == 0 and json.loads(out)[0]["params"]["bursts"] == 5
    assert err.splitlines() == [
        "kalloc: note: [[variant]] 'passive' is not selected by this command: ignored",
        "kalloc: note: option 'kmem_map.vm_kmem_size' is for backend 'kmem_map', which this command does not "
        "select: ignored",
        "kalloc: note: option 'slab.zone_cache' is for backend 'slab', which this command does not select: ignored",
        "kalloc: note: parameter 'net.packets' is for workload 'net', which this command does not select: ignored"]
    rc, out, _ = kalloc_cli(capsys, "info", "--config", str(f), "--backend", "passive", "--ncpus", "1", "--format",
                            "json")
    assert rc == 0 and json.loads(out)[0]["options"]["remote_free"] == "passive"


def test_the_command_line_still_refuses_an_unselected_backend(capsys):
    rc, _, err = kalloc_cli(capsys, "run", "--backend", "bump", "--set", "slab.zone_cache=8")
    assert rc == 2 and "names backend 'slab', which is not selected" in err


# --- a deadlock is one cell's end ---------------------------------------------------------------------

class Stuck:
    """On 2 CPUs a consumer waits for a queue that nothing fills: a deadlock."""

    NAME = "stuck"
    DESCRIPTION = "test workload"
    PARAMS = {}

    def threads(self, ctx):
        def work():
            for _ in range(20):
                h = yield wl.malloc(64, "drv")
                yield wl.free(h)
            if ctx.ncpus > 1:
                yield wl.get(ctx.queue("never"))
        return [(0, "worker", work())]


@pytest.fixture
def stuck():
    class Plugin:
        @kalloc.hookimpl
        def kalloc_workloads(self):
            return [Stuck]
    pm, p = plugins.plugin_manager(), Plugin()
    pm.register(p)
    yield
    pm.unregister(p)


def test_a_deadlock_is_recorded_in_its_cell_and_the_grid_goes_on(stuck):
    recs = kalloc.experiment.compare(backends="bump,slab", workloads="stuck,tty", ncpus=[1, 2], params=TTY, warmup=0)
    assert len(recs) == 8
    stuck_at = {(r["workload"], r["ncpus"], r["backend"]): r["panic"] for r in recs if r["panic"]}
    assert set(stuck_at) == {("stuck", 2, "bump"), ("stuck", 2, "slab")}
    assert all("deadlock: worker on cpu 0 waits on an empty queue" in m for m in stuck_at.values())
    rows = [line.split() for line in compare_table(recs).splitlines()[2:10]]
    assert [row[-1] for row in rows] == ["0", "0", "1", "1", "0", "0", "0", "0"]
