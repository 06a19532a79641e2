"""The installed ``kalloc`` script, run as a user runs it (subprocess)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KALLOC = shutil.which("kalloc") or str(Path(sys.executable).parent / "kalloc")


def run(*args, check=True):
    p = subprocess.run([KALLOC, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_backends_json():
    rows = json.loads(run("backends", "--format", "json").stdout)
    names = {r["name"] for r in rows}
    assert {"bump", "slab", "kmem_map"} <= names
    assert all(r["description"] and r["origin"] for r in rows)
    slab = next(r for r in rows if r["name"] == "slab")["option_info"]
    assert slab["remote_free"]["choices"] == ["ipi", "passive"] and slab["remote_free"]["default"] == "ipi"
    assert slab["zone_cache"] == {"type": "an integer", "default": 2, "minimum": 0, "maximum": 1 << 16,
                                  "help": slab["zone_cache"]["help"]} and slab["zone_cache"]["help"]
    # the backend's own defaults, not the common table's: DragonFly 2003 had no idle zeroing
    assert slab["idle_zero"]["default"] is False and slab["page_policy"]["default"] == "2003-09-14"


def test_workloads_table():
    out = run("workloads").stdout
    assert "tty" in out and "origin" in out


def test_compare_json_has_the_record_keys():
    recs = json.loads(run("compare", "--format", "json", "--param", "bursts=20").stdout)
    assert {r["backend"] for r in recs} == {"slab", "kmem_map"}
    for r in recs:
        assert {"backend", "workload", "ncpus", "seed", "params", "ops", "memory", "types",
                "wall_seconds"} <= set(r)
        assert set(r["ops"]) >= {"malloc", "free", "realloc", "failed"}
        assert set(r["memory"]) >= {"peak_requested_bytes", "peak_footprint_bytes",
                                    "end_footprint_bytes", "overhead_ratio"}
        assert r["ops"]["malloc"] > 0 and r["panic"] is None


def test_same_seed_same_json_bytes():
    args = ("compare", "--backends", "slab,kmem_map", "--ncpus", "2", "--format", "json",
            "--param", "bursts=20", "--seed", "7")
    a, b = run(*args).stdout, run(*args).stdout
    assert a == b and json.loads(a)[0]["wall_seconds"] is None
    timed = json.loads(run(*args, "--timing", "--workloads", "tty").stdout)
    assert all(r["wall_seconds"] > 0 for r in timed)


def test_config_file_and_command_line_wins(tmp_path):
    cfg = tmp_path / "k.toml"
    cfg.write_text('backends = ["bump"]\nworkloads = ["tty"]\nncpus = [1, 2]\n[params.tty]\nbursts = 5\n')
    recs = json.loads(run("compare", "--config", str(cfg), "--format", "json").stdout)
    assert [(r["backend"], r["ncpus"], r["params"]["bursts"]) for r in recs] == [("bump", 1, 5), ("bump", 2, 5)]
    recs = json.loads(run("compare", "--config", str(cfg), "--ncpus", "4", "--format", "json").stdout)
    assert [r["ncpus"] for r in recs] == [4]


def test_csv_output_to_file(tmp_path):
    out = tmp_path / "r.csv"
    run("compare", "--backends", "bump", "--format", "csv", "--param", "bursts=5", "--output", str(out))
    header, row = out.read_text().splitlines()[:2]
    assert "sim.makespan_cycles" in header.split(",") and row.startswith("bump,tty,1,")


def test_output_named_in_the_config_file(tmp_path):
    out = tmp_path / "r.json"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'backends = ["bump"]\nformat = "json"\noutput = "{out}"\n[params]\nbursts = 5\n')
    p = run("compare", "--config", str(cfg))
    assert p.stdout == "" and json.loads(out.read_text())[0]["backend"] == "bump"


def test_info_prints_classes():
    out = run("info", "--backend", "kmem_map").stdout
    assert "8192" in out and "16" in out


def test_run_report_shows_the_dma_counters():
    """dma{} nests a dict per facility; the text report flattens them as CSV does."""
    out = run("run", "--workload", "isa", "--physmem", "256M", "--ncpus", "2").stdout
    section = out[out.index("\ndma\n"):out.index("malloc types")]
    assert "isa.bounced_bytes" in section and "contig.calls" in section


def test_replay_help_gives_one_cpu_count():
    helps = {cmd: next(line for line in run(cmd, "--help").stdout.splitlines() if line.startswith("  --ncpus"))
             for cmd in ("replay", "compare")}
    assert "comma-separated" not in helps["replay"] and "comma-separated" in helps["compare"]


@pytest.mark.parametrize("args,msg", [
    (("compare", "--backends", "nope"), "unknown backend 'nope'"),
    (("compare", "--workloads", "nope"), "unknown workload 'nope'"),
    (("compare", "--set", "nope=1"), "unknown option 'nope'"),
    (("compare", "--set", "slab.zone_cache=lots"), "zone_cache"),
    (("compare", "--param", "bursts=-1"), "must not be negative"),
    (("compare", "--physmem", "12X"), "bad physmem"),
    (("compare", "--ncpus", "0"), "ncpus"),
    (("compare", "--ncpus", "2000"), "ncpus"),
    (("compare", "--format", "xml"), "unknown format"),
    (("compare", "--arch", "vax"), "unknown arch"),
    (("compare", "--cost", "ipi_send=cheap"), "cost 'ipi_send'"),
    (("compare", "--config", "/nonexistent.toml"), "not found"),
    (("info", "--physmem", "1000"), "physmem"),
    (("compare", "--output", "/nonexistent/dir/r.json"), "no such directory"),
    (("compare", "--plot", "/nonexistent/dir/r.png"), "no such directory"),
    (("scenario", "isa-dma", "--output", "/"), "is a directory"),
    (("replay", "-", "--ncpus", "1,2"), "one --ncpus"),
    (("run", "--workload", "tty,net"), "takes one workload"),
    (("run", "--workload", "tty", "--backend", "slab,kmem_map"), "takes one backend"),
    (("info", "--ncpus", "1,2"), "takes one CPU count"),
    (("info", "--set", "maxusers=0"), "unknown option 'maxusers' for slab"),
    (("compare", "--backends", "slab,slab"), "lists 'slab' twice"),
    (("compare", "--ncpus", "1,2,1"), "lists 1 twice"),
    (("compare", "--output", ""), "output must be a file name"),
    (("scenario", "isa-dma", "--seed", "-1"), "seed must be at least 0"),
    (("frobnicate",), "invalid choice"),
    (("info", "--plot", "x.png"), "unrecognized arguments: --plot"),       # info makes no record
    (("info", "--timing"), "unrecognized arguments: --timing"),
    (("compare", "--physmem", "4G"), "vm_kmem_size is 0"),                 # 4.8's kmeminit at 4 GiB
])
def test_bad_input_is_one_line_and_exit_2(args, msg):
    p = run(*args, check=False)
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in p.stderr


def test_a_panic_that_ends_a_command_says_it_is_a_panic():
    """--scale 100 makes the boot load outgrow ffsnode's malloc limit: the kernel's message,
    marked as the simulated kernel's, not as a mistake in the command."""
    p = run("scenario", "isa-dma", "--scale", "100", check=False)
    assert p.returncode == 2 and p.stderr == "kalloc: simulated kernel panic: ffsnode: malloc limit exceeded\n"


def test_string_settings_take_unquoted_numbers_and_dates(tmp_path):
    """page_policy 4.8 and 2003-09-14, and cost preset 2003, are what the docs print; TOML
    reads them unquoted as a float, a date and an int."""
    for value in ("4.8", "2003-09-14"):
        info = json.loads(run("info", "--set", f"page_policy={value}", "--format", "json").stdout)
        assert info[0]["options"]["page_policy"] == value
    cfg = tmp_path / "c.toml"
    cfg.write_text("[options]\npage_policy = 2003-08-01\n[costs]\npreset = 2003\n")
    p = run("compare", "--config", str(cfg), "--workloads", "tty", "--ncpus", "1", check=False)
    assert p.returncode == 2 and "2003-08-01" in p.stderr      # read as its text, then checked
    cfg.write_text("[costs]\npreset = 2003\n")
    assert run("compare", "--config", str(cfg), "--workloads", "tty", "--ncpus", "1").returncode == 0


def test_bad_toml(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("backends = [\n")
    p = run("compare", "--config", str(cfg), check=False)
    assert p.returncode == 2 and "not valid TOML" in p.stderr
    cfg.write_bytes(b"\xff\xfe backends")
    p = run("compare", "--config", str(cfg), check=False)
    assert p.returncode == 2 and "not valid TOML" in p.stderr and "Traceback" not in p.stderr
    for bad, msg in (("output = 5", "output must be a file name"), ("costs = 1", "[costs] must be a table"),
                     ('executor = "dask"\nscheduler = 1', "scheduler must be an address"),
                     ('scheduler = "tcp://h:8786"', "it needs executor dask"),
                     ('backend = "slab"\nbackends = ["kmem_map"]', "backends and backend are both given")):
        cfg.write_text(bad + "\n")
        p = run("compare", "--config", str(cfg), check=False)
        assert p.returncode == 2 and msg in p.stderr, p.stderr
    cfg.write_text('colour = "blue"\n')
    p = run("compare", "--config", str(cfg), check=False)
    assert p.returncode == 2 and "unknown key(s) colour" in p.stderr


def test_info_slub_prints_proc_slabinfo():
    out = run("info", "--backend", "slub", "--ncpus", "2").stdout
    lines = out.split("/proc/slabinfo\n", 1)[1].splitlines()
    assert lines[0] == "slabinfo - version: 2.1" and lines[1].startswith("# name            <active_objs>")
    row = next(line.split() for line in lines if line.startswith("kmalloc-512 "))
    assert row[1:6] == ["0", "0", "512", "16", "2"]          # objsize, objperslab, pagesperslab on 2 CPUs

