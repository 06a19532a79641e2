"""A third-party workload package (docs/example-plugin) installed with pip shows up in
`kalloc workloads` and runs in `kalloc compare`, exactly as docs/workloads.md says."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "docs" / "example-plugin"
KALLOC = str(Path(sys.executable).parent / "kalloc")


@pytest.fixture(scope="module")
def installed():
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", str(PKG)], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot pip-install the example plugin here: {p.stderr.strip()[-300:]}")
    try:
        yield
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", "kalloc-ata"], capture_output=True)


def test_listed_and_compared(installed):
    rows = json.loads(subprocess.run([KALLOC, "workloads", "--format", "json"], capture_output=True,
                                     text=True, check=True).stdout)
    ata = next(r for r in rows if r["name"] == "ata")
    assert ata["origin"] == "kalloc-ata" and ata["params"] == {"requests": 500, "seek_cycles": 3000}
    p = subprocess.run([KALLOC, "compare", "--workloads", "ata,net", "--ncpus", "2", "--param", "ata.requests=50",
                        "--format", "json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    recs = json.loads(p.stdout)
    ata_recs = [r for r in recs if r["workload"] == "ata"]
    assert {r["backend"] for r in ata_recs} == {"slab", "kmem_map"}
    assert all(r["ops"]["malloc"] == 100 and r["panic"] is None for r in ata_recs)
