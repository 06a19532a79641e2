"""Saved runs: --save, kalloc runs/show/diff/export, and the database's robustness."""

import json
import multiprocessing
import sqlite3

import pytest

from kalloc import cli, experiment, runsdb

GRID = ["--backends", "bump,slab", "--workloads", "tty", "--ncpus", "1", "--param", "bursts=5"]


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "runs.db"
    monkeypatch.setenv("KALLOC_DB", str(path))
    return path


def kalloc(capsys, *args):
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("command,extra", [
    ("compare", GRID), ("scale", GRID[:4] + ["--ncpus", "1,2", "--param", "bursts=5"]),
    ("run", ["--backend", "bump", "--workload", "tty", "--param", "bursts=5"]),
    ("sweep", GRID + ["--vary", "cost.op_base=10,20", "--ratio", "slab/bump"]),
])
def test_show_prints_a_saved_run_as_its_command_did(db, capsys, command, extra):
    rc, printed, err = kalloc(capsys, command, *extra, "--save")
    assert rc == 0 and err == f"kalloc: saved as {command}-1 (kalloc show {command}-1)\n"
    assert kalloc(capsys, "show", f"{command}-1") == (0, printed, "")
    _, as_json, _ = kalloc(capsys, command, *extra, "--format", "json")
    assert kalloc(capsys, "show", f"{command}-1", "--format", "json")[1] == as_json


def test_runs_lists_names_dates_commands_cells_and_deletes(db, capsys):
    assert kalloc(capsys, "runs")[1] == f"no saved runs in {db} (save one with --save)\n"
    kalloc(capsys, "compare", *GRID, "--save", "first")
    kalloc(capsys, "compare", *GRID, "--save")
    rows = json.loads(kalloc(capsys, "runs", "--format", "json")[1])
    assert [(r["name"], r["cells"]) for r in rows] == [("first", 2), ("compare-1", 2)]
    assert rows[0]["command"] == "kalloc compare " + " ".join(GRID) + " --save first"
    assert rows[0]["date"].endswith("+00:00")
    assert kalloc(capsys, "runs", "--delete", "first") == (0, "deleted first\n", "")
    assert [r["name"] for r in json.loads(kalloc(capsys, "runs", "--format", "json")[1])] == ["compare-1"]


def test_records_are_stored_without_a_date_and_export_as_the_command_prints(db, capsys):
    _, as_json, _ = kalloc(capsys, "compare", *GRID, "--format", "json", "--save", "x")
    assert kalloc(capsys, "export", "x")[1] == as_json
    _, as_csv, _ = kalloc(capsys, "compare", *GRID, "--format", "csv")
    assert kalloc(capsys, "export", "x", "--format", "csv")[1] == as_csv
    assert "+00:00" not in as_json


def test_a_taken_name_is_refused_before_any_work(db, capsys, monkeypatch):
    kalloc(capsys, "compare", *GRID, "--save", "x")
    monkeypatch.setattr(experiment, "run_grid", lambda *a, **k: pytest.fail("the grid ran"))
    rc, out, err = kalloc(capsys, "compare", *GRID, "--save", "x")
    assert rc == 2 and out == "" and "a saved run is named 'x' already (kalloc runs --delete x)" in err


def test_diff_gives_ratios_and_the_settings_that_differ(db, capsys):
    kalloc(capsys, "compare", *GRID, "--save", "a")
    kalloc(capsys, "compare", *GRID, "--cost", "op_base=400", "--ncpus", "1,2", "--save", "b")
    rc, out, _ = kalloc(capsys, "diff", "a", "b")
    assert rc == 0 and "costs.op_base: 40 -> 400" in out
    d = json.loads(kalloc(capsys, "diff", "a", "b", "--format", "json")[1])
    assert [c["backend"] for c in d["cells"]] == ["bump", "slab"] and d["only_a"] == []
    assert [c["ncpus"] for c in d["only_b"]] == [2, 2]
    assert all(c["throughput"] < 1 for c in d["cells"]) and d["differs"] == {"costs.op_base": [40, 400]}
    _, same, _ = kalloc(capsys, "diff", "a", "a")
    assert "settings and provenance: the same" in same and "x1.000" in same


def test_the_database_is_flag_then_env_then_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("KALLOC_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert runsdb.db_path() == str(tmp_path / "xdg" / "kalloc" / "runs.db")
    monkeypatch.setenv("KALLOC_DB", "/e.db")
    assert runsdb.db_path() == "/e.db" and runsdb.db_path("/f.db") == "/f.db"


def test_the_xdg_default_is_made(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KALLOC_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert kalloc(capsys, "compare", *GRID, "--save")[0] == 0
    assert (tmp_path / "xdg" / "kalloc" / "runs.db").exists()


def _foreign(path):
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE t (x)")
    c.commit()
    c.close()


def _newer(path):
    runsdb.save(str(path), None, "compare", [], {"command": "compare"}, [])
    c = sqlite3.connect(path)
    c.execute(f"PRAGMA user_version = {runsdb.SCHEMA + 1}")
    c.commit()
    c.close()


@pytest.mark.parametrize("make,msg", [
    (lambda p: p.write_bytes(b"this is no database" * 100), "not a readable kalloc runs database"),
    (_foreign, "another application's SQLite database"),
    (_newer, f"a runs database of a newer kalloc (schema {runsdb.SCHEMA + 1}"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_a_bad_database_is_one_line(db, capsys, make, msg):
    make(db)
    for args in (["runs"], ["show", "x"], ["compare", *GRID, "--save"]):
        rc, out, err = kalloc(capsys, *args)
        assert rc == 2 and out == "" and err.count("\n") == 1 and msg in err, (args, err)


def test_unknown_names_and_formats_are_one_line(db, capsys):
    kalloc(capsys, "compare", *GRID, "--save", "x")
    for args, msg in ((["show", "y"], "no saved run named 'y'"), (["diff", "x", "y"], "no saved run named 'y'"),
                      (["runs", "--delete", "y"], "no saved run named 'y'"),
                      (["export", "x", "--format", "table"], "unknown format 'table'"),
                      (["compare", *GRID, "--save", " x"], "a saved run's name is a word")):
        rc, out, err = kalloc(capsys, *args)
        assert rc == 2 and out == "" and err.count("\n") == 1 and msg in err, (args, err)


def _saver(path, n):
    for i in range(n):
        runsdb.save(path, None, "compare", ["compare"], {"command": "compare"}, [{"i": i}])


def test_two_processes_saving_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "runs.db")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_saver, args=(path, 15)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    names = [r["name"] for r in runsdb.runs(path)]
    assert sorted(names) == sorted(f"compare-{i}" for i in range(1, 31))
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
