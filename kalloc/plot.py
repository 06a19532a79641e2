"""Plots (matplotlib, the optional extra ``kalloc[plot]``): PNG files, no screen needed.

* ``plot_compare``: per workload, throughput and peak footprint of each backend (bars,
  mean with min-max error bars over the seeds).
* ``plot_scale``: per backend, throughput and lock-wait share against the CPU count.
* ``plot_series``: footprint and requested bytes over virtual time for each run.
"""

from __future__ import annotations

import io

from kalloc.harness import labels


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'kalloc[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def require() -> None:
    """ValueError now, before any run, if plotting is not possible."""
    _pyplot()


def _save(fig, path: str) -> None:
    """Drawn in memory, then written: matplotlib drops the error of a full disk."""
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110)
    with open(path, "wb") as f:
        f.write(png.getvalue())


def plot_compare(rows: list, path: str) -> None:
    """``rows`` from kalloc.harness.summarize."""
    plt = _pyplot()
    cells = sorted({(labels(r)[0], r["ncpus"]) for r in rows}, key=str)
    backends = list(dict.fromkeys(labels(r)[1] for r in rows))
    by = {(labels(r)[0], r["ncpus"], labels(r)[1]): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(cells) * len(backends)), 4.5))
    width = 0.8 / len(backends)
    for ax, metric, label, scale in ((axes[0], "throughput_ops_per_mcycle", "ops per Mcycle (higher is better)", 1),
                                     (axes[1], "peak_growth_bytes", "memory grown KiB (lower is better)", 1024)):
        for i, b in enumerate(backends):
            xs, ys, lo, hi = [], [], [], []
            for j, (w, n) in enumerate(cells):
                s = by.get((w, n, b), {}).get(metric)
                if s:
                    xs.append(j + i * width)
                    ys.append(s["mean"] / scale)
                    lo.append((s["mean"] - s["min"]) / scale)
                    hi.append((s["max"] - s["mean"]) / scale)
            ax.bar(xs, ys, width, yerr=[lo, hi], label=b)
        ax.set_xticks([j + width * (len(backends) - 1) / 2 for j in range(len(cells))])
        ax.set_xticklabels([f"{w}\n{n} cpu" for w, n in cells])
        ax.set_ylabel(label)
        ax.legend()
    _save(fig, path)


def plot_scale(rows: list, path: str) -> None:
    """``rows`` from kalloc.cli scale records: one per backend x ncpus."""
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for b in dict.fromkeys(labels(r)[1] for r in rows):
        rs = sorted((r for r in rows if labels(r)[1] == b), key=lambda r: r["ncpus"])
        n = [r["ncpus"] for r in rs]
        a1.plot(n, [r["throughput_ops_per_mcycle"]["mean"] for r in rs], marker="o", label=b)
        a2.plot(n, [r["lock_wait_share"] * 100 for r in rs], marker="o", label=b)
    for ax, label in ((a1, "ops per Mcycle"), (a2, "lock wait, % of CPU time")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("CPUs")
        ax.set_ylabel(label)
        ax.legend()
    a1.set_title(f"scaling: {rows[0]['workload']}" if rows else "scaling")
    _save(fig, path)


def plot_series(records: list, path: str) -> None:
    """Footprint (solid) and requested bytes (dashed) over virtual time, one colour per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for r in records:
        s = r["series"]
        label = f"{labels(r)[1]} {labels(r)[0]} {r['ncpus']}cpu"
        line, = ax.plot(s["t"], [v / 1024 for v in s["footprint"]], label=f"{label} footprint")
        ax.plot(s["t"], [v / 1024 for v in s["requested"]], linestyle="--", color=line.get_color(),
                label=f"{label} requested")
    ax.set_xlabel("virtual time (cycles)")
    ax.set_ylabel("KiB")
    ax.legend(fontsize="small")
    _save(fig, path)
