"""``kalloc diff A B``: two sets of records side by side, as ``pytest-benchmark compare`` does.

Cells are matched by (workload variant, CPUs, seed, backend variant, sweep point); for each
matched cell the ratio B/A of the main metrics (throughput, malloc p99, peak footprint,
overhead), then the cells only one side has, then every setting and provenance key whose
value differs between matched cells (``costs.ipi_send: 1500 -> 300``): what to suspect
first when a ratio is not 1.
"""

from __future__ import annotations

import json

from tabulate import tabulate

from kalloc.export import flatten
from kalloc.harness import labels

METRICS = (("throughput", ("sim", "throughput_ops_per_mcycle")), ("p99", ("latency", "malloc", "p99")),
           ("footprint", ("memory", "peak_footprint_bytes")), ("overhead", ("memory", "overhead_ratio")))
# What a record was made with: the keys whose differences explain a difference in results.
SETTINGS = ("physmem", "arch", "params", "options", "costs", "machine", "run", "provenance", "trace.sha256")


def cell(r: dict) -> tuple:
    w, b = labels(r)
    return (w, r["ncpus"], r["seed"], b, json.dumps(r.get("point"), sort_keys=True))


def _dig(r: dict, path: tuple):
    for k in path:
        r = r.get(k) if isinstance(r, dict) else None
    return r


def _ratio(a, b):
    return None if a is None or b is None or not a else b / a


def settings(r: dict) -> dict:
    """The record's settings and provenance, flat (``costs.ipi_send``; a list is one value)."""
    return {k: v for key in SETTINGS
            for k, v in flatten({key: _dig(r, tuple(key.split(".")))}, lists=True).items()}


def diff(a: list, b: list) -> dict:
    """{"cells": [{workload, ncpus, seed, backend, point, <metric>: B/A}], "only_a", "only_b",
    "differs": {key: [A's value, B's value]} ("(varies)" where the cells disagree)}."""
    by_a, by_b = {cell(r): r for r in a}, {cell(r): r for r in b}
    rows, differs = [], {}
    for key, ra in by_a.items():
        rb = by_b.get(key)
        if rb is None:
            continue
        row = {"workload": key[0], "ncpus": key[1], "seed": key[2], "backend": key[3], "point": ra.get("point")}
        row.update({name: _ratio(_dig(ra, path), _dig(rb, path)) for name, path in METRICS})
        rows.append(row)
        sa, sb = settings(ra), settings(rb)
        for k in dict.fromkeys([*sa, *sb]):
            if sa.get(k) != sb.get(k):
                pair = [sa.get(k), sb.get(k)]
                differs[k] = pair if differs.get(k, pair) == pair else ["(varies)", "(varies)"]
    return {"cells": rows, "only_a": _only(by_a, by_b), "only_b": _only(by_b, by_a), "differs": differs}


def _only(x: dict, y: dict) -> list:
    """The cells of ``x`` that ``y`` has not."""
    return [dict(zip(("workload", "ncpus", "seed", "backend"), k)) for k in x if k not in y]


def diff_table(d: dict, a: str, b: str) -> str:
    points = any(r["point"] for r in d["cells"])
    rows = [[r["workload"], r["ncpus"], r["seed"], r["backend"], *([_point(r["point"])] if points else []),
             *("-" if r[name] is None else f"x{r[name]:.3f}" for name, _ in METRICS)] for r in d["cells"]]
    headers = ["workload", "cpus", "seed", "backend", *(["point"] if points else []),
               *(f"{name} {b}/{a}" for name, _ in METRICS)]
    out = tabulate(rows, headers=headers, disable_numparse=True) + "\n" if rows else "no cell in common\n"
    for side, name in (("only_a", a), ("only_b", b)):
        if d[side]:
            out += f"only in {name}: " + "; ".join(f"{c['workload']} {c['ncpus']} cpus seed {c['seed']} {c['backend']}"
                                                  for c in d[side]) + "\n"
    if d["differs"]:
        out += "\nsettings and provenance that differ:\n" + "".join(
            f"  {k}: {va} -> {vb}\n" for k, (va, vb) in d["differs"].items())
    else:
        out += "\nsettings and provenance: the same in every common cell\n"
    return out + (f"\n{b}/{a}: {b}'s figure over {a}'s; throughput: higher is better, p99 (malloc latency), footprint "
                  "(peak wired bytes) and overhead (grown / requested bytes): lower is better\n")


def _point(point) -> str:
    return ", ".join(f"{k}={v}" for k, v in (point or {}).items())
