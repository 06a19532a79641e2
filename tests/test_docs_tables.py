"""The generated tables of the docs are those today's code makes (docs/make_replay_tables.py)."""

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _generator():
    spec = importlib.util.spec_from_file_location("make_replay_tables", DOCS / "make_replay_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_replay_md_tables_are_fresh():
    gen = _generator()
    text = gen.PAGE.read_text()
    assert "<!-- make_replay_tables: trace-contents -->" in text
    assert gen.regenerate(text) == text, "docs/replay.md is stale: run python docs/make_replay_tables.py"


def test_a_stale_table_is_rewritten():
    gen = _generator()
    stale = "x\n<!-- make_replay_tables: trace-contents -->\n| old |\n<!-- end -->\ny\n"
    new = gen.regenerate(stale)
    assert "| old |" not in new and "| cross-CPU frees |" in new and new.endswith("<!-- end -->\ny\n")
