"""Output: JSON (the full records), CSV (flat scalars, full precision) and tables.

JSON is the list of records the issues define, unchanged.  CSV flattens each record's
scalar fields with dotted names (``sim.makespan_cycles``); lists (types, classes, the
time series) stay in JSON only.  The comparison table groups repeated runs (different
seeds) and puts the backends side by side, each (workload, ncpus) block with ratios
against its first backend: ``x1.00`` is the reference, higher throughput is better,
lower footprint is better.
"""

from __future__ import annotations

import csv
import io
import json

from tabulate import tabulate

from kalloc.harness import summarize


def to_json(data) -> str:
    return json.dumps(data, indent=2) + "\n"


def flatten(rec: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif not isinstance(v, list):
            out[key] = v
    return out


def to_csv(rows: list) -> str:
    flat = [flatten(r) for r in rows]
    fields: list = []
    for f in flat:
        fields += [k for k in f if k not in fields]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(flat)
    return buf.getvalue()


def to_table(rows: list, headers="keys") -> str:
    return tabulate(rows, headers=headers) + "\n"


def _fmt_stat(s: dict | None, scale: float = 1.0, digits: int = 1) -> str:
    if s is None:
        return "-"
    mean = s["mean"] / scale
    if s["stdev"]:
        return f"{mean:,.{digits}f} ±{s['stdev'] / scale:,.{digits}f}"
    return f"{mean:,.{digits}f}"


def _ratio(a: dict | None, b: dict | None) -> str:
    if not a or not b or not b["mean"]:
        return "-"
    r = a["mean"] / b["mean"]
    return ">1000" if r > 1000 else f"x{r:.2f}"


def compare_table(records: list) -> str:
    """Backends side by side for each (workload, ncpus), ratios against the first."""
    rows = []
    first: dict = {}
    for s in summarize(records):
        key = (s["workload"], s["ncpus"])
        ref = first.setdefault(key, s)
        thr, fp = s.get("throughput_ops_per_mcycle"), s.get("peak_footprint_bytes")
        mk, lw = s.get("makespan_cycles"), s.get("lock_wait_cycles")
        wait_pct = f"{100 * lw['mean'] / (mk['mean'] * s['ncpus']):.1f}" if lw and mk and mk["mean"] else "-"
        rows.append([
            s["workload"] if ref is s else "", s["ncpus"] if ref is s else "", s["backend"],
            _fmt_stat(thr), _ratio(thr, ref.get("throughput_ops_per_mcycle")), wait_pct,
            _fmt_stat(s.get("ipis"), digits=0), _fmt_stat(fp, 1024, 0),
            _ratio(fp, ref.get("peak_footprint_bytes")), _fmt_stat(s.get("overhead_ratio"), digits=2),
            _fmt_stat(s.get("bytes_zeroed"), 1024, 0), _fmt_stat(s.get("failed"), digits=0),
            s["panics"] or "",
        ])
    headers = ["workload", "cpus", "backend", "ops/Mcycle", "vs 1st", "lock wait %", "IPIs",
               "peak KiB", "vs 1st", "overhead", "zeroed KiB", "failed", "panics"]
    runs = {s["runs"] for s in summarize(records)}
    legend = ("ops/Mcycle: allocator operations per million simulated cycles (higher is better); "
              "vs 1st: ratio to the first backend of the block; lock wait %: share of CPU time spent "
              "waiting for a global lock; peak KiB: peak memory wired by the allocator; overhead: "
              "peak footprint / peak requested bytes; " +
              (f"mean ±stdev over {max(runs)} seeds" if max(runs) > 1 else "one seed per cell"))
    return tabulate(rows, headers=headers, disable_numparse=True) + "\n\n" + legend + "\n"


def render(data: list, fmt: str, table) -> str:
    """One of the three formats; ``table`` renders the table form of ``data``."""
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(data)
    return table(data)
