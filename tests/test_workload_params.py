"""Workload parameters: every bad value is a clear ValueError naming the workload and the
parameter (one line and exit status 2 on the command line), and the bounds let every valid
value through."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kalloc import plugins
from kalloc.harness import RunSpec, run_one
from kalloc.workload import Workload, resolve_params
from kalloc_plugins.workloads import kalloc_workloads

BUNDLED = {cls.NAME: cls for cls in kalloc_workloads()}
FLOATS = [(name, k) for name, cls in BUNDLED.items() for k, v in cls.PARAMS.items() if type(v) is float]
KALLOC = shutil.which("kalloc") or str(Path(sys.executable).parent / "kalloc")


@pytest.mark.parametrize("cls", BUNDLED.values(), ids=BUNDLED)
def test_defaults_are_within_the_limits(cls):
    assert set(cls.LIMITS) <= set(cls.PARAMS)
    assert resolve_params(cls, dict(cls.PARAMS)) == cls.PARAMS


@pytest.mark.parametrize("workload,param", FLOATS)
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 10 ** 400])
def test_float_parameters_must_be_finite(workload, param, value):
    with pytest.raises(ValueError, match=f"parameter '{param}' of workload '{workload}' must be a finite number"):
        resolve_params(BUNDLED[workload], {param: value})


@pytest.mark.parametrize("workload,params,match", [
    ("net", {"gap_cycles": 0}, "parameter 'gap_cycles' of workload 'net' must be at least 1, got 0"),
    ("net", {"large_fraction": 1.5}, "parameter 'large_fraction' of workload 'net' must be from 0 to 1, got 1.5"),
    ("net", {"large_fraction": -0.1}, "'large_fraction' of workload 'net' must be from 0 to 1"),
    ("tty", {"max_cblocks": 0}, "parameter 'max_cblocks' of workload 'tty' must be at least 1, got 0"),
    ("tty", {"think_cycles": 0}, "parameter 'think_cycles' of workload 'tty' must be at least 1"),
    ("larson", {"slots": 0}, "parameter 'slots' of workload 'larson' must be at least 1"),
    ("larson", {"min_size": 2000}, r"workload 'larson': min_size \(2000\) must not be above max_size \(1024\)"),
    ("larson", {"min_size": 64, "max_size": 32}, r"min_size \(64\) must not be above max_size \(32\)"),
    ("prodcons", {"batch": 0}, "parameter 'batch' of workload 'prodcons' must be at least 1"),
    ("fs", {"cache": -1}, "parameter 'cache' of workload 'fs' must not be negative"),
])
def test_out_of_range_values_are_rejected(workload, params, match):
    with pytest.raises(ValueError, match=match):
        resolve_params(BUNDLED[workload], params)


@pytest.mark.parametrize("workload,params", [
    ("net", {"packets": 40, "gap_cycles": 1, "large_fraction": 0}),
    ("net", {"packets": 40, "large_fraction": 1}),
    ("tty", {"bursts": 5, "max_cblocks": 1, "think_cycles": 1, "line_buffer_every": 0}),
    ("larson", {"slots": 1, "rounds": 5, "epochs": 2, "min_size": 100, "max_size": 100}),
    ("prodcons", {"objects": 20, "batch": 1}),
    ("fs", {"cache": 0, "turnover": 5, "big_every": 0}),
    ("scsi", {"commands": 5, "zero_size_every": 0, "service_cycles": 0}),
])
def test_values_on_the_bounds_run(workload, params):
    r = run_one(RunSpec("bump", workload, 2, params=params))
    assert r["panic"] is None and r["ops"]["malloc"] > 0


class ThirdParty:                       # not a Workload subclass: the hooks are optional
    NAME = "third"
    PARAMS = {"lo": 1, "hi": 2, "share": 0.5}
    LIMITS = {"lo": (-3, None), "share": (0.25, 0.75)}

    @classmethod
    def check_params(cls, p):
        if p["lo"] > p["hi"]:
            raise ValueError("lo must not be above hi")


def test_a_third_party_workload_gets_limits_and_its_own_rules():
    assert resolve_params(ThirdParty, {"lo": -3, "share": 0.75})["lo"] == -3
    with pytest.raises(ValueError, match="parameter 'lo' of workload 'third' must be at least -3, got -4"):
        resolve_params(ThirdParty, {"lo": -4})
    with pytest.raises(ValueError, match="'share' of workload 'third' must be from 0.25 to 0.75, got 0.8"):
        resolve_params(ThirdParty, {"share": 0.8})
    with pytest.raises(ValueError, match="^workload 'third': lo must not be above hi$"):
        resolve_params(ThirdParty, {"lo": 3})

    class Bare:                         # neither LIMITS nor check_params
        NAME, PARAMS = "bare", {"n": 1}
    assert resolve_params(Bare, {"n": 5}) == {"n": 5}
    assert Workload.check_params({}) is None


@pytest.mark.skipif(not {"slab", "kmem_map"} <= set(plugins.backends()), reason="needs the default backends")
@pytest.mark.parametrize("args,msg", [
    (("run", "--workload", "net", "--ncpus", "2", "--param", "net.gap_cycles=0"), "'gap_cycles' of workload 'net'"),
    (("run", "--workload", "isa", "--ncpus", "1", "--physmem", "4M"), "workload 'isa' needs physmem above 5632K"),
    (("run", "--workload", "isa", "--ncpus", "1", "--param", "kernel_image=99999999"), "kernel_image must be"),
    (("run", "--workload", "isa", "--ncpus", "1", "--param", "channel=2"), "workload 'isa': channel must be"),
    (("run", "--workload", "isa", "--ncpus", "1", "--param", "scale=inf"),
     "'scale' of workload 'isa' must be a finite number"),
    (("scenario", "isa-dma", "--scale", "inf"), "scale must be positive and finite, got inf"),
    (("compare", "--param", "net.large_fraction=1.5"), "'large_fraction' of workload 'net' must be from 0 to 1"),
    (("run", "--workload", "tty", "--param", "max_cblocks=0"), "'max_cblocks' of workload 'tty' must be at least 1"),
    (("run", "--workload", "larson", "--param", "slots=0"), "'slots' of workload 'larson' must be at least 1"),
])
def test_cli_bad_parameter_is_one_line_and_exit_2(args, msg):
    p = subprocess.run([KALLOC, *args], capture_output=True, text=True, timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert len(lines) == 1 and msg in lines[0], p.stderr
