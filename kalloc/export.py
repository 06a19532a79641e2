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
import math

from tabulate import tabulate

from kalloc.harness import labels, summarize

# What "lock wait %" is a share of, and of which lock, for the tables' legends.
LOCK_WAIT = ("lock wait %: cycles spent waiting for the global lock (kmem_map's splhigh/MP lock; the slab's "
             "kernel_map lock, taken for new zones and large allocations), as a share of all CPUs' measured "
             "time (makespan x CPUs)")


def _strict(value):
    """``value`` with every NaN or infinity replaced by None: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def to_json(data) -> str:
    """Strict JSON (null for a number that is not finite)."""
    return json.dumps(_strict(data), indent=2, allow_nan=False) + "\n"


def flatten(rec: dict, prefix: str = "", lists: bool = False) -> dict:
    """Nested tables as one level of dotted keys ({"a": {"b": 1}} -> {"a.b": 1}); a list is
    one value with ``lists``, else left out (a CSV cell holds no list)."""
    out = {}
    for k, v in rec.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + ".", lists))
        elif lists or not isinstance(v, list):
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
    """Backends side by side for each (workload, ncpus), ratios against the first.  A
    replayed trace's block compares cycles per operation: its throughput is the trace's."""
    rows = []
    first: dict = {}
    summary = summarize(records)
    for s in summary:
        key = (s["workload_variant"], s["ncpus"])
        ref = first.setdefault(key, s)
        thr, fp = s.get("throughput_ops_per_mcycle"), s.get("peak_growth_bytes")
        mk, lw = s.get("makespan_cycles"), s.get("lock_wait_cycles")
        cpo = s.get("cycles_per_op")
        vs = (_ratio(ref.get("cycles_per_op"), cpo) if s["replay"]         # the first's cost over this one's
              else _ratio(thr, ref.get("throughput_ops_per_mcycle")))
        wait_pct = f"{100 * lw['mean'] / (mk['mean'] * s['ncpus']):.1f}" if lw and mk and mk["mean"] else "-"
        share = s.get("allocator_share")
        rows.append([
            s["workload_variant"] if ref is s else "", s["ncpus"] if ref is s else "",
            s["variant"] + (" (giant)" if s["giant"] else ""),
            _fmt_stat(thr), _fmt_stat(cpo, digits=0), vs,
            f"{100 * share['mean']:.1f}" if share else "-",
            _fmt_stat(s.get("malloc_p99"), digits=0), _fmt_stat(s.get("malloc_max"), digits=0), wait_pct,
            _fmt_stat(s.get("ipis"), digits=0), _fmt_stat(fp, 1024, 0),
            _ratio(fp, ref.get("peak_growth_bytes")), _fmt_stat(s.get("overhead_ratio"), digits=2),
            _fmt_stat(s.get("bytes_zeroed"), 1024, 0), _fmt_stat(s.get("failed"), digits=0),
            s["panics"],
        ])
    headers = ["workload", "cpus", "backend", "ops/Mcycle", "cycles/op", "thr vs 1st", "alloc %", "malloc p99",
               "malloc max", "lock wait %", "IPIs", "grown KiB", "grown vs 1st", "overhead x", "zeroed KiB",
               "failed", "panics"]
    runs = max(s["runs"] for s in summary)
    legend = ("measured phase only (after each run's warm-up). ops/Mcycle: allocator operations per million "
              "simulated cycles of makespan (higher is better); cycles/op: allocator and IPI-handler cycles per "
              "operation; thr vs 1st: ratio to the first backend of the block, higher is better: throughput, or "
              "for a replayed trace (whose throughput the trace fixes) the first's cycles/op over this one's; "
              "alloc %: allocator and handler share of busy cycles; malloc p99, max: latency in cycles, lock "
              "waiting included; " + LOCK_WAIT + "; grown KiB: peak memory wired above boot; grown vs 1st: its "
              "ratio to the first backend's, lower is better; overhead x: grown / requested bytes at that peak, "
              "a ratio (1.25: a quarter more than requested); panics: runs that ended in a panic or a deadlock; " +
              ("(giant): the what-if of all kernel work under one lock; " if any(s["giant"] for s in summary)
               else "") +
              (f"mean ±stdev over {runs} seeds" if runs > 1 else "one seed per cell"))
    return tabulate(rows, headers=headers, disable_numparse=True) + "\n\n" + legend + "\n"


def latency_table(rec: dict) -> str:
    """The latency of each kind of operation, in cycles (count, mean, percentiles, max)."""
    rows = [{"operation": kind, **{k: (f"{v:,.1f}" if k == "mean" else f"{v:,}") for k, v in lat.items()}}
            for kind, lat in rec["latency"].items()]
    return tabulate(rows, headers="keys", disable_numparse=True) + "\n"


def cpus_table(rec: dict) -> str:
    """Each CPU's measured time, and which one is the bottleneck when one is: the CPU
    with the most busy cycles, named when it is busy 90 % of the makespan or more and
    the others are idle a tenth of it or more."""
    cpus = rec["cpus"]
    rows = [{"cpu": c["cpu"], **{k.replace("_cycles", ""): f"{v:,}" for k, v in c.items() if k != "cpu"}}
            for c in cpus]
    out = tabulate(rows, headers="keys", disable_numparse=True) + "\n"
    hot = bottleneck(rec)
    if hot is not None:
        out += f"cpu {hot} is the bottleneck: busy {_busy_pct(rec, hot):.0f} % of the makespan while the others idle\n"
    return out


def _busy_pct(rec: dict, cpu: int) -> float:
    span = rec["sim"]["makespan_cycles"]
    return 100 * rec["cpus"][cpu]["busy_cycles"] / span if span else 0.0


def bottleneck(rec: dict) -> int | None:
    """The CPU that bounds the run, if one does (see cpus_table)."""
    cpus, span = rec["cpus"], rec["sim"]["makespan_cycles"]
    if len(cpus) < 2 or not span:
        return None
    hot = max(cpus, key=lambda c: (c["busy_cycles"], -c["cpu"]))
    others = [c for c in cpus if c is not hot]
    if hot["busy_cycles"] >= 0.9 * span and all(c["idle_cycles"] >= 0.1 * span for c in others):
        return hot["cpu"]
    return None


def render(data: list, fmt: str, table) -> str:
    """One of the three formats; ``table`` renders the table form of ``data``."""
    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        return to_csv(data)
    return table(data)


def scale_rows(summary: list) -> list:
    """One record per backend x CPU count, with the speedup over the backend's smallest
    CPU count and the share of CPU time spent waiting for a lock (None where a run that
    panicked before its first operation left no throughput or no time)."""
    rows = []
    base: dict = {}
    order = {k: i for i, k in enumerate(dict.fromkeys(labels(s) for s in summary))}   # as --backends lists them
    for s in sorted(summary, key=lambda s: (order[labels(s)], s["ncpus"])):
        thr, mk, lw = (s.get(k, {}).get("mean") for k in
                       ("throughput_ops_per_mcycle", "makespan_cycles", "lock_wait_cycles"))
        ref = base.setdefault(labels(s), thr)
        rows.append({**s, "speedup": round(thr / ref, 4) if ref and thr is not None else None,
                     "lock_wait_share": round(lw / (mk * s["ncpus"]), 4) if mk and lw is not None else 0.0})
    return rows


def _scale_cells(r: dict | None) -> list:
    """A backend's three cells of the scale table ("-" where nothing was measured)."""
    if r is None:
        return ["-", "-", "-"]
    return [_fmt_stat(r.get("throughput_ops_per_mcycle")),
            "-" if r["speedup"] is None else f"x{r['speedup']:.2f}", f"{100 * r['lock_wait_share']:.1f}"]


def scale_table(rows: list) -> str:
    """CPU counts down, backends across: throughput, speedup and lock-wait share; the
    last column names the backends whose runs panicked in that row (and how many)."""
    backends = list(dict.fromkeys(labels(r)[1] for r in rows))
    workloads = list(dict.fromkeys(labels(r)[0] for r in rows))
    by = {(*labels(r), r["ncpus"]): r for r in rows}
    out = []
    for w, n in dict.fromkeys((labels(r)[0], r["ncpus"]) for r in
                              sorted(rows, key=lambda r: (workloads.index(labels(r)[0]), r["ncpus"]))):
        line = [w, n]
        for b in backends:
            line += _scale_cells(by.get((w, b, n)))
        line.append(", ".join(f"{b} {by[w, b, n]['panics']}" for b in backends
                              if by.get((w, b, n), {}).get("panics")) or 0)
        out.append(line)
    headers = (["workload", "cpus"] + [f"{b} {h}" for b in backends for h in ("ops/Mcycle", "speedup", "lock wait %")]
               + ["panics"])
    return (tabulate(out, headers=headers, disable_numparse=True) + "\n\nspeedup: throughput over the same "
            "backend's throughput at the smallest CPU count; " + LOCK_WAIT + "; panics: the backends whose "
            "runs ended in a kernel panic or a deadlock, and how many (their figures stop there), else 0\n")


def run_report(rec: dict) -> str:
    """The full report of one run: the summary line, then every section of the record."""
    parts = [compare_table([rec]), "latency (cycles)\n" + latency_table(rec), "cpus (cycles)\n" + cpus_table(rec)]
    for title, section in (("warm-up", rec["warmup"]), ("operations", rec["ops"]), ("simulated time", rec["sim"]),
                           ("memory", rec["memory"]), ("zeroing", rec["zeroing"]),
                           ("counters", rec["counters"]), ("machine", rec["machine"]),
                           ("workload counters", rec.get("workload_counts") or {}),
                           ("dma", rec.get("dma") or {}), ("trace", rec.get("trace") or {})):
        rows = flatten(section)                  # dma's facilities are nested: isa.starts, ...
        if rows:
            parts.append(f"{title}\n" + tabulate(rows.items(), disable_numparse=True) + "\n")
    parts.append("malloc types\n" + to_table(rec["types"]))
    if rec["classes"]:
        parts.append("size classes in use\n" + to_table(rec["classes"]))
    if rec.get("caches"):
        parts.append("object caches\n" + to_table(rec["caches"]))
    if rec["panic"]:
        parts.append(f"PANIC: {rec['panic']}\n")
    return "\n".join(parts)


def run_reports(records: list) -> str:
    """Several runs of one input (``kalloc replay --backends a,b``): the backends side by
    side first, with their ratios to the first, then each run in full."""
    head = [compare_table(records)] if len(records) > 1 else []
    return "\n".join(head + [run_report(r) for r in records])


def present(view: dict, records: list, fmt: str) -> str:
    """What a command prints of its records (``view``: the command, and a sweep's keys, metric
    and ratio): the same for the command and for ``kalloc show`` of its saved run."""
    command = view["command"]
    if command == "sweep":
        from kalloc.sweep import sweep_output
        return sweep_output(records, view["keys"], view["metric"], tuple(view["ratio"]) if view["ratio"] else None,
                            fmt)
    if command == "scale":
        return render(scale_rows(summarize(records)), fmt, scale_table)
    tables = {"run": lambda rs: run_report(rs[0]), "compare": compare_table, "replay": run_reports}
    return render(records, fmt, tables[command])
