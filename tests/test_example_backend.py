"""A third-party backend package (docs/example-backend) installed with pip: it shows up in
`kalloc backends`, runs in `kalloc compare`, and passes the conformance battery through
the pytest plugin (`pytest --kalloc-backend firstfit`), as its author would run it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "docs" / "example-backend"
BIN = Path(sys.executable).parent


def sh(*args, cwd=None, check=True):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=600)
    if check:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return p


@pytest.fixture(scope="module")
def installed():
    p = sh(sys.executable, "-m", "pip", "install", "-q", str(PKG), check=False)
    if p.returncode != 0:
        pytest.skip(f"cannot pip-install the example backend here: {p.stderr.strip()[-300:]}")
    try:
        yield
    finally:
        sh(sys.executable, "-m", "pip", "uninstall", "-y", "-q", "kalloc-firstfit", check=False)


def test_listed_and_compared(installed):
    rows = json.loads(sh(BIN / "kalloc", "backends", "--format", "json").stdout)
    assert {"name": "firstfit", "origin": "kalloc-firstfit"}.items() <= next(
        r for r in rows if r["name"] == "firstfit").items()
    recs = json.loads(sh(BIN / "kalloc", "compare", "--backends", "slab,firstfit", "--workloads", "tty",
                         "--ncpus", "1", "--param", "bursts=10",
                         "--format", "json").stdout)
    assert [r["backend"] for r in recs] == ["slab", "firstfit"] and all(r["panic"] is None for r in recs)


def test_conformance_battery_through_the_pytest_plugin(installed, tmp_path):
    """All of it passes (nothing skipped), each id names the backend and the option given,
    and the directory it ran in is left as it was."""
    p = sh(sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--kalloc-backend", "firstfit",
           "--kalloc-option", "arena=131072", "--kalloc-examples", "30", cwd=tmp_path)
    ran = [line.split()[0] for line in p.stdout.splitlines() if line.endswith("%]")]
    assert ran and all(r.startswith("kalloc.conformance_suite::test_") and "[firstfit-arena=131072" in r
                       for r in ran), ran
    assert f"{len(ran)} passed" in p.stdout and "skipped" not in p.stdout
    assert list(tmp_path.iterdir()) == []


def test_plugin_refuses_a_bad_option(installed, tmp_path):
    p = sh(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--kalloc-backend", "firstfit",
           "--kalloc-option", "arena=lots", cwd=tmp_path, check=False)
    assert p.returncode == 4 and "option 'arena' of backend 'firstfit' takes an integer" in p.stderr


def test_plugin_refuses_an_unknown_backend(tmp_path):
    p = sh(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--kalloc-backend", "nope",
           cwd=tmp_path, check=False)
    assert p.returncode != 0 and "unknown backend 'nope'" in p.stderr + p.stdout
