"""Regenerate docs/results.md and its plots from today's code: `python docs/make_results.py`.

Runs the README's default comparison, the scaling grids of the CPU-local and the cross-CPU
workloads on slab (2003), slab with the 2010 passive remote free, and kmem_map, and the
three real traces in tests/traces/; writes the tables, the plots and every figure the text
quotes.  The numbers in results.md come from here, so the page always shows what the code does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import attrs

from kalloc.executors import run_grid
from kalloc.export import compare_table, scale_rows, scale_table
from kalloc.harness import specs_for, summarize
from kalloc.plot import plot_compare, plot_scale
from kalloc.replay.run import replay_trace

DOCS = Path(__file__).resolve().parent
WORKLOADS = ["tty", "net", "fs", "scsi", "larson", "prodcons"]
CPUS = [1, 2, 4, 8]
SEEDS = [0, 1, 2]


def scaling(workloads, jobs) -> list:
    """slab, slab with passive remote free, kmem_map: one record per backend x ncpus."""
    base = run_grid(specs_for(["slab", "kmem_map"], workloads, CPUS, SEEDS), jobs)
    passive = run_grid([attrs.evolve(s, options={"remote_free": "passive"})
                        for s in specs_for(["slab"], workloads, CPUS, SEEDS)], jobs)
    for r in passive:
        r["backend"] = "slab-passive"
    return scale_rows(summarize(base + passive))


def pick(rows, backend, workload, n, key="speedup"):
    r = next(x for x in rows if (x["backend"], x["workload"], x["ncpus"]) == (backend, workload, n))
    return r[key] if key == "speedup" else r[key]["mean"]


def main(jobs: int = 2) -> None:
    os.chdir(DOCS.parent)             # the traces' paths, as the records name them, from the checkout
    default = run_grid(specs_for(["slab", "kmem_map"], WORKLOADS, [1, 2, 4], [0]), jobs)
    rows = scaling(WORKLOADS, jobs)
    by_wl = {w: [r for r in rows if r["workload"] == w] for w in WORKLOADS}
    plot_compare(summarize(default), str(DOCS / "results-compare.png"))
    plot_scale(by_wl["tty"], str(DOCS / "results-scale-tty.png"))
    plot_scale(by_wl["prodcons"], str(DOCS / "results-scale-prodcons.png"))
    traces = [replay_trace(f"tests/traces/{n}.perf.txt.xz", b) for n in ("build", "exec", "fs")
              for b in ("slab", "kmem_map")]
    thr = lambda b, w, n: pick(rows, b, w, n, "throughput_ops_per_mcycle")
    long_tty = scale_rows(summarize(run_grid(specs_for(["slab", "kmem_map"], ["tty"], [1, 8], [0],
                                                       params={"bursts": 4000}), jobs)))
    f = {
        "tty_slab": pick(rows, "slab", "tty", 8), "tty_kmem": pick(rows, "kmem_map", "tty", 8),
        "fs_slab": pick(rows, "slab", "fs", 8), "fs_kmem": pick(rows, "kmem_map", "fs", 8),
        "pc2_ratio": thr("slab", "prodcons", 2) / thr("kmem_map", "prodcons", 2),
        "pc2_passive": thr("slab-passive", "prodcons", 2) / thr("kmem_map", "prodcons", 2),
        "pc8_passive": thr("slab-passive", "prodcons", 8) / thr("kmem_map", "prodcons", 8),
        "net4_ratio": thr("slab", "net", 4) / thr("kmem_map", "net", 4),
        "net4_passive": thr("slab-passive", "net", 4) / thr("kmem_map", "net", 4),
        "larson1": thr("slab", "larson", 1) / thr("kmem_map", "larson", 1),
        "tty_slab_long": pick(long_tty, "slab", "tty", 8), "tty_kmem_long": pick(long_tty, "kmem_map", "tty", 8),
        "tty_wait": pick(rows, "slab", "tty", 8, "lock_wait_cycles") / pick(rows, "slab", "tty", 8, "makespan_cycles") / 8 * 100,
    }
    text = TEMPLATE.format(
        compare=compare_table(default),
        scale="\n".join(f"### {w}\n\n```\n{scale_table(by_wl[w])}```\n" for w in WORKLOADS),
        traces=compare_table(traces),
        **{k: f"{v:.2f}" for k, v in f.items()})
    (DOCS / "results.md").write_text(text)


TEMPLATE = """# Results: slab vs kmem_map, today

Produced by `python docs/make_results.py` (about a minute on 2 cores) from the code as it is;
every figure below is filled in by that script. Simulated machine: i386, 64 MiB, the 2003 cost
model ([cost-model.md](cost-model.md)); three seeds per cell in the scaling tables.
Published allocator results (McKusick & Karels 1988, Bonwick 1994, DragonFly 2010) and the slab
announcement's claims, each beside kalloc's figure, are in [reproductions.md](reproductions.md).

## The default comparison (`kalloc compare`)

```
{compare}```

![throughput and memory grown per workload](results-compare.png)

## Scaling

![tty: throughput and lock wait against CPUs](results-scale-tty.png)
![prodcons: throughput and lock wait against CPUs](results-scale-prodcons.png)

{scale}
## What they show

**CPU-local loads scale on the per-CPU slab and not on the global lock.** On `tty` (one tty per
CPU, every object allocated and freed on its own CPU) kmem_map's throughput at 8 CPUs is
x{tty_kmem} its 1-CPU figure: every operation takes the one splhigh/giant section, so a second CPU
mostly waits for it and each hand-off moves the lock's cache line. The slab reaches x{tty_slab} in
the default run, not the linear figure its per-CPU zones promise, and the reason is warm-up: each
CPU's first zones come from `kmem_slab_alloc`, which zeroes them page by page under the
`kernel_map` lock, so eight CPUs starting at once queue for that lock ({tty_wait}% of CPU time
waiting at 8 CPUs). In a run eight times longer (`--param bursts=4000`) the zones are made once and
reused, and the slab reaches x{tty_slab_long} against kmem_map's x{tty_kmem_long}. `fs` shows the
same shape (x{fs_slab} against x{fs_kmem}). This is the shape Bonwick and Adams (2001) report for a
per-CPU front end against a single locked layer: near-linear for the first, flat or falling after
a few CPUs for the second.

**Cross-CPU loads make the 2003 slab pay one IPI per free.** On `prodcons` with 2 CPUs (every
object freed on the other CPU) the 2003 slab reaches x{pc2_ratio} of kmem_map's throughput: each
remote free costs the sender an IPI send (1,500 cycles) and the owner an interrupt (1,000) plus
the free itself, against some 300-700 cycles of locked bucket work, as [research/costs.md](research/costs.md) predicted
from the 2003 IPI costs. The 2010 passive remote free (`remote_free=passive`) wins it back:
x{pc2_passive} of kmem_map at 2 CPUs and x{pc8_passive} at 8. On `net` at 4 CPUs (interrupt on
CPU 0, protocol threads elsewhere) the ratios are x{net4_ratio} (2003) and x{net4_passive} (passive):
with one IPI per free, the frees come back to the busiest CPU, the one taking the interrupts.

**Memory: the slab pays per size class and per CPU; the buckets pay per power of two.** Each
slab zone is ZoneSize bytes (32 KiB at 64 MiB) per size class per CPU, and is zeroed when created,
so a short run that touches many size classes (`larson`: 16-1024 bytes) grows far more memory and
zeroing work than kmem_map's one-page bucket refills, and at 1 CPU it runs at x{larson1} of
kmem_map's speed while those zones are filled. kmem_map's power-of-two buckets waste up to half
of each chunk instead (internal fragmentation in the JSON). Over long runs the slab's zones are
reused (FreeZones) and the zero-fill is amortised; Bonwick (1994) measured total fragmentation of
14% for the slab against 45% for 4.4BSD's buckets on kenbus, a steady-state figure that these
short synthetic runs, dominated by warm-up, do not reach. The slab's boot-time `kmemusage` array
(1 MiB on i386) is a fixed cost reported as `boot_footprint_bytes`.

**Known bias.** kalloc does not model the idle-loop page zeroing of both kernels, so every page a
new slab zone gets is zeroed at allocation (kmem_map zeroes only M_ZERO requests): this charges
the slab more zeroing than a real, partly idle 2003 machine would.

## Real traces (Linux kmem tracepoints, 2 CPUs)

The three traces in `tests/traces/` ([replay.md](replay.md)), replayed on the same 64 MiB
machine; `kalloc replay tests/traces/build.perf.txt.xz --backends slab,kmem_map` gives the
first block.

```
{traces}```
"""

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
