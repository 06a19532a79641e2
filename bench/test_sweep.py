"""A sweep of 100 points (tty at 2 CPUs, two prices x 10 values, slab and kmem_map: 200 runs)
on 2 processes, as a user runs it: the seconds per point, a figure without a target."""

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import REFERENCE, record

KALLOC = str(Path(sys.executable).parent / "kalloc")
ARGS = ["sweep", "--workloads", "tty", "--param", "bursts=100", "--ncpus", "2",
        "--vary", "cost.lock_handoff=100:500:10", "--vary", "cost.coherence_miss=100:500:10",
        "--ratio", "slab/kmem_map", "--jobs", "2", "--format", "json"]


def test_sweep_100_points_2_jobs():
    t = time.perf_counter()
    out = subprocess.run([KALLOC, *ARGS], check=True, capture_output=True, text=True, timeout=900).stdout
    dt = time.perf_counter() - t
    got = json.loads(out)
    points = len(got["ratio"]["points"])
    assert points == 100 and len(got["records"]) == 200
    record("sweep, 100 points x 2 backends, --jobs 2: seconds per point", dt / points, "s", REFERENCE, True)
