"""Benchmarks report ratios against a floor measured in the same run (never absolute times).

`pytest bench/` runs them; at the end a table of ratios is printed and written to
bench/results.json.  The targets (issue "Performance and scale") are shown next to them.
"""

import json
from pathlib import Path

import pytest

RATIOS: dict = {}
REFERENCE = "(reference)"   # the target of a figure shown for comparison, which has none


@pytest.fixture(scope="session")
def ratios():
    return RATIOS


def pytest_terminal_summary(terminalreporter):
    if not RATIOS:
        return
    tr = terminalreporter
    tr.section("kalloc performance ratios")
    for name, r in RATIOS.items():
        verdict = "" if r["target"] == REFERENCE else "ok" if r["ok"] else "MISSED"
        tr.write_line(f"{name:55s} {r['value']:>10.3f} {r['unit']:10s} target {r['target']}  {verdict}")
    Path(__file__).with_name("results.json").write_text(json.dumps(RATIOS, indent=2) + "\n")


def record(name: str, value: float, unit: str, target: str, ok: bool) -> None:
    RATIOS[name] = {"value": value, "unit": unit, "target": target, "ok": bool(ok)}
