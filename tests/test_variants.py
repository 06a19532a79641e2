"""Variants: a backend or workload several times in one grid, each with its own settings."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalloc import cli
from kalloc.config import build
from kalloc.variants import Variant, label, parse_item, split_items

TTY = {"params": {"tty": {"bursts": 5}}}


def cfg(file=None, **cli_values):
    return build({**TTY, **(file or {})}, cli_values)


def test_items_split_outside_brackets_only():
    assert split_items("slab, slab[remote_free=passive,zone_cache=32],kmem_map") == [
        "slab", "slab[remote_free=passive,zone_cache=32]", "kmem_map"]
    assert split_items("a[x=[1,2]],b") == ["a[x=[1,2]]", "b"]


def test_the_default_label_is_the_name_and_its_settings_in_brackets():
    v = parse_item("slab[ remote_free = passive , zone_cache=32 ]", "backends")
    assert v == Variant("slab[remote_free=passive,zone_cache=32]", "slab", {"remote_free": "passive", "zone_cache": 32})
    assert parse_item("slab", "backends") == Variant("slab", "slab", {})


_VALUES = st.one_of(st.integers(0, 10 ** 6), st.booleans(), st.sampled_from(["passive", "malloc", "x1"]))


@given(st.dictionaries(st.sampled_from(["a", "bb", "zone_cache", "k_2"]), _VALUES, min_size=1))
def test_a_label_parses_back_to_its_variant(settings):
    text = label("slab", settings)
    assert parse_item(text, "backends") == Variant(text, "slab", settings)


@pytest.mark.parametrize("text,msg", [
    ("slab[zone_cache=32", "a variant is NAME[key=value,...]"),
    ("slab[]", "nothing between the brackets"),
    ("slab[zone_cache]", "'zone_cache' is not key=value"),
    ("slab[a=1,a=2]", "'a' is set twice"),
    ("[a=1]", "a variant is NAME[key=value,...]"),
])
def test_malformed_variants_name_the_item(text, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        parse_item(text, "backends")


def test_a_variant_s_options_win_over_set_and_the_file():
    c = cfg({"options": {"slab": {"zone_cache": 8}}}, backends="slab,slab[zone_cache=32],kmem_map",
            options={"remote_free": "passive"})
    assert c.backends == ("slab", "slab[zone_cache=32]", "kmem_map")
    assert c.options_for("slab") == {"zone_cache": 8, "remote_free": "passive"}
    assert c.options_for("slab[zone_cache=32]") == {"zone_cache": 32, "remote_free": "passive"}
    assert c.backend_of("slab[zone_cache=32]") == "slab" and c.backend_of("kmem_map") == "kmem_map"


def test_the_same_variant_twice_is_refused_however_it_is_spelled():
    with pytest.raises(ValueError, match=r"lists 'slab\[zone_cache=32\]' twice"):
        cfg(backends="slab[zone_cache=32],slab[ zone_cache = 32 ]")
    with pytest.raises(ValueError, match="lists 'slab' twice"):
        cfg(backends="slab,slab")


def test_a_variant_s_bad_option_names_the_variant():
    with pytest.raises(ValueError, match=r"backends lists 'slab\[nope=1\]': unknown option 'nope' for backend 'slab'"):
        cfg(backends="slab,slab[nope=1]")
    with pytest.raises(ValueError, match=r"workloads lists 'tty\[nope=1\]': unknown parameter"):
        cfg(workloads="tty[nope=1]")


def test_variant_tables_are_named_and_referred_to():
    tables = [{"name": "passive", "backend": "slab", "options": {"remote_free": "passive"}},
              {"name": "short", "workload": "net", "params": {"packets": 50}},
              {"backend": "slab", "options": {"zone_cache": 16}}]
    c = cfg({"variant": tables}, backends=["slab", "passive", "slab[zone_cache=16]"], workloads="tty,short")
    assert c.backends == ("slab", "passive", "slab[zone_cache=16]") and c.workloads == ("tty", "short")
    assert c.options_for("passive") == {"remote_free": "passive"} and c.params_for("short") == {"packets": 50}
    assert c.notes == ()
    c = cfg({"variant": tables}, backends="slab", workloads="tty")
    assert [n for n in c.notes if "[[variant]]" in n] == [
        "[[variant]] 'passive' is not selected by this command: ignored",
        "[[variant]] 'short' is not selected by this command: ignored",
        "[[variant]] 'slab[zone_cache=16]' is not selected by this command: ignored"]


@pytest.mark.parametrize("tables,msg", [
    ([{"name": "x", "options": {}}], "needs one of backend"),
    ([{"name": "x", "backend": "slab", "workload": "tty"}], "needs one of backend"),
    ([{"name": "x", "backend": "slab", "params": {}}], "its settings are a table options"),
    ([{"name": "a[b]", "backend": "slab"}], "without brackets"),
    ([{"name": "x", "backend": "slab"}, {"name": "x", "backend": "bump"}], "'x' is given twice"),
    ([{"name": "kmem_map", "backend": "slab"}], "is the name of a plugin"),
    ([{"name": "x", "backend": "slab", "colour": 1}], "unknown key"),
    ({"name": "x"}, "must be [[variant]] tables"),
])
def test_bad_variant_tables_are_errors(tables, msg):
    with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        cfg({"variant": tables})


def test_a_workload_variant_used_as_a_backend_is_refused():
    with pytest.raises(ValueError, match="a \\[\\[variant\\]\\] of a workload"):
        cfg({"variant": [{"name": "short", "workload": "tty", "params": {"bursts": 2}}]}, backends="short")


def _json(capsys, *args):
    assert cli.main([*args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_compare_runs_each_variant_and_labels_its_record(capsys):
    recs = _json(capsys, "compare", "--backends", "slab,slab[remote_free=passive]", "--workloads",
                 "prodcons[objects=200],prodcons", "--ncpus", "2", "--param", "objects=100")
    got = [(r["variant"], r["backend"], r["workload_variant"], r["workload"], r["params"]["objects"],
            r["options"]["remote_free"]) for r in recs]
    assert got == [("slab", "slab", "prodcons[objects=200]", "prodcons", 200, "ipi"),
                   ("slab[remote_free=passive]", "slab", "prodcons[objects=200]", "prodcons", 200, "passive"),
                   ("slab", "slab", "prodcons", "prodcons", 100, "ipi"),
                   ("slab[remote_free=passive]", "slab", "prodcons", "prodcons", 100, "passive")]
    assert recs[0]["sim"]["ipis"] > 0 and recs[1]["sim"]["ipis"] == 0      # passive: no IPI per remote free


def test_tables_show_the_labels(capsys):
    assert cli.main(["compare", "--backends", "bump,bump[fail_interval=7]", "--workloads", "tty", "--ncpus", "1",
                     "--param", "bursts=5"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].split()[2] == "bump" and rows[3].split()[0] == "bump[fail_interval=7]"


def test_sweep_ratio_takes_a_variant(capsys):
    out = _json(capsys, "sweep", "--backends", "slab,slab[remote_free=passive]", "--workloads", "prodcons",
                "--param", "objects=100", "--vary", "cost.ipi_send=100,2000", "--ratio",
                "slab[remote_free=passive]/slab", "--warmup", "0")
    assert out["ratio"]["of"] == "slab[remote_free=passive]/slab"
    assert [r["variant"] for r in out["records"]] == ["slab", "slab[remote_free=passive]"] * 2
    assert len(out["ratio"]["points"]) == 2


def test_scale_keeps_the_backends_order(capsys):
    assert cli.main(["scale", "--backends", "slab,bump,kmem_map", "--workloads", "tty", "--ncpus", "1,2",
                     "--param", "bursts=5"]) == 0
    head = capsys.readouterr().out.splitlines()[0].split()
    assert [h for h in head if h in ("slab", "bump", "kmem_map")] == ["slab"] * 3 + ["bump"] * 3 + ["kmem_map"] * 3
