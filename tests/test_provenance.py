"""Every record carries what it takes to rerun it; ``kalloc rerun FILE`` checks that it does."""

import hashlib
import json

import attrs
import pytest

from kalloc import cli
from kalloc.backends.base import COMMON_OPTIONS
from kalloc.backends.slab import SlabBackend
from kalloc.costs import CostModel
from kalloc.harness import RunSpec, run_one

LINES = [
    "  a 1 [000] 1.000000: kmem:kmalloc: call_site=f+0x1 ptr=0xffff000000001000 bytes_req=100 bytes_alloc=128 "
    "gfp_flags=GFP_KERNEL node=-1 accounted=false",
    "  a 1 [001] 1.000100: kmem:kfree: call_site=h+0x3 ptr=0xffff000000001000",
]


def test_a_record_has_its_settings_resolved_and_its_provenance():
    rec = run_one(RunSpec("slab", "tty", 2, params={"bursts": 5}, options={"zone_cache": 8},
                          costs={"preset": "modern", "ipi_send": 77}, warmup=10))
    assert set(rec["options"]) == set(COMMON_OPTIONS) | set(SlabBackend.OPTIONS)     # defaults included
    assert rec["options"]["zone_cache"] == 8 and rec["options"]["remote_free"] == "ipi"
    assert set(rec["params"]) >= {"bursts", "think_cycles"} and rec["params"]["bursts"] == 5
    model = CostModel.from_config({"preset": "modern", "ipi_send": 77})
    assert rec["costs"] == {"preset": "modern", **attrs.asdict(model)}
    assert rec["run"] == {"warmup": 10} and rec["machine"]["coherence"] is True
    prov = rec["provenance"]
    assert prov["kalloc"] == rec["version"] and prov["backend_dist"][0] == "kalloc"
    assert prov["workload_dist"][0] == "kalloc" and prov["python"].count(".") == 2
    assert "date" not in json.dumps(rec) and "time" not in set(rec)


def test_the_resolved_record_reruns_to_itself():
    """Feeding a record's resolved settings back gives the same record: they are complete."""
    a = run_one(RunSpec("kmem_map", "net", 2, seed=3, params={"packets": 60}))
    b = run_one(RunSpec(a["backend"], a["workload"], a["ncpus"], a["seed"], a["physmem"], a["arch"], a["options"],
                        a["params"], a["costs"], a["run"]["warmup"]))
    assert {**a, "wall_seconds": 0} == {**b, "wall_seconds": 0}


def _kalloc(capsys, *args):
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _trace(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("\n".join(LINES * 20) + "\n")
    return path


def test_a_replay_names_its_trace_by_path_and_sha256(tmp_path, capsys):
    path = _trace(tmp_path)
    rc, out, _ = _kalloc(capsys, "replay", str(path), "--backends", "bump", "--format", "json")
    assert rc == 0
    trace = json.loads(out)[0]["trace"]
    assert trace["path"] == str(path) and trace["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_rerun_says_identical_per_record(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["compare", "--backends", "bump,slab[zone_cache=4]", "--workloads", "tty", "--ncpus", "1,2",
                     "--param", "bursts=5", "--format", "json", "--output", str(out)]) == 0
    rc, text, err = _kalloc(capsys, "rerun", str(out))
    assert rc == 0 and err == ""
    assert text.splitlines() == [f"record {i} ({b} on tty, {n} CPUs, seed 0): identical"
                                 for i, (n, b) in enumerate([(1, "bump"), (1, "slab[zone_cache=4]"),
                                                             (2, "bump"), (2, "slab[zone_cache=4]")], 1)]


def test_rerun_finds_a_changed_record_and_exits_1(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["run", "--backend", "bump", "--workload", "tty", "--param", "bursts=5", "--format", "json",
                     "--output", str(out)]) == 0
    recs = json.loads(out.read_text())
    recs[0]["sim"]["cycles"] += 1
    recs[0]["provenance"]["kalloc"] = "0.0.1"
    out.write_text(json.dumps(recs))
    rc, text, _ = _kalloc(capsys, "rerun", str(out))
    assert rc == 1 and text == "record 1 (bump on tty, 1 CPUs, seed 0): differs in sim.cycles, provenance.kalloc\n"


def test_rerun_of_a_replay_checks_the_trace(tmp_path, capsys):
    path, out = _trace(tmp_path), tmp_path / "r.json"
    assert cli.main(["replay", str(path), "--backends", "bump,kmem_map", "--format", "json", "--output",
                     str(out)]) == 0
    rc, text, _ = _kalloc(capsys, "rerun", str(out))
    assert rc == 0 and text.count("identical") == 2
    path.write_text("\n".join(LINES * 21) + "\n")
    rc, text, _ = _kalloc(capsys, "rerun", str(out))
    assert rc == 1 and text.count("has changed (its sha256 is not the recorded one)") == 2


def test_rerun_of_a_sweep_keeps_its_points(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert cli.main(["sweep", "--backends", "bump", "--workloads", "tty", "--param", "bursts=5", "--vary",
                     "cost.op_base=10,20", "--format", "json", "--output", str(out)]) == 0
    rc, text, _ = _kalloc(capsys, "rerun", str(out))
    assert rc == 0 and text.count("identical") == 2


@pytest.mark.parametrize("content,msg", [
    ("not json", "not JSON"),
    ("[]", "holds no records"),
    ('{"a": 1}', "holds no records"),
    ('[{"backend": "slab"}]', "record 1 lacks variant"),
])
def test_rerun_refuses_what_holds_no_records_in_one_line(tmp_path, capsys, content, msg):
    f = tmp_path / "x.json"
    f.write_text(content)
    rc, out, err = _kalloc(capsys, "rerun", str(f))
    assert rc == 2 and out == "" and err.count("\n") == 1 and msg in err


def test_rerun_refuses_scale_summaries(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert cli.main(["scale", "--backends", "bump", "--workloads", "tty", "--ncpus", "1", "--param", "bursts=5",
                     "--format", "json", "--output", str(out)]) == 0
    rc, _, err = _kalloc(capsys, "rerun", str(out))
    assert rc == 2 and "kalloc scale prints summaries" in err
