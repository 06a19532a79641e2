"""Regenerate docs/results.md and its plots from today's code: `python docs/make_results.py`.

Runs the README's default comparison, the same grid with no warm-up, the scaling grids on slab
(2003), slab with the 2010 passive remote free and kmem_map, one cell per verdict with each
mechanism of docs/cost-model.md switched off in turn, and the three real traces in tests/traces/;
writes the tables, the plots and every figure the text quotes.  The text's qualitative claims
(who is ahead, which mechanism matters) are checked against the figures here, and the script
stops if one no longer holds, so the page never says what the code does not show.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tabulate import tabulate

from kalloc import experiment
from kalloc.executors import run_grid
from kalloc.export import compare_table, scale_rows, scale_table
from kalloc.harness import RunSpec, specs_for, summarize
from kalloc.plot import plot_compare, plot_scale
from kalloc.replay.run import replay_backends
from kalloc.sweep import crossovers, ratio_points, run_sweep, sensitivity, sweep_specs

DOCS = Path(__file__).resolve().parent
WORKLOADS = ["tty", "net", "fs", "scsi", "larson", "prodcons"]
CPUS = [1, 2, 4, 8]
SEEDS = [0, 1]
# The cells whose verdicts the text explains, and the mechanisms switched off one at a time.
CELLS = [("tty", 4), ("fs", 4), ("scsi", 4), ("larson", 4), ("net", 4), ("prodcons", 2), ("tty", 1)]
SWITCHES = [("all on (default)", {}), ("coherence=false", {"coherence": False}),
            ("tlb_model=sync", {"tlb_model": "sync"}), ("ipi_drain=false", {"ipi_drain": False}),
            ("lock_hold=whole", {"lock_hold": "whole"}), ("kernel_build=smp", {"kernel_build": "smp"}),
            ("slab idle_zero=true", {"idle_zero": True}), ("giant=true (what-if)", {"giant": True})]


def cpus_for(w: str) -> list:
    """larson's per-CPU live set at 8 CPUs is more than the 64 MiB kernel's type limit."""
    return CPUS[:-1] if w == "larson" else CPUS


# slab with the 2010 passive remote free, beside the 2003 slab: a variant of one backend.
PASSIVE = {"name": "slab-passive", "backend": "slab", "options": {"remote_free": "passive"}}


def scaling(jobs) -> list:
    """slab, slab with passive remote free, kmem_map: one record per backend x ncpus."""
    records = [r for w in WORKLOADS for r in experiment.scale(
        backends=["slab", "slab-passive", "kmem_map"], variants=[PASSIVE], workloads=[w], ncpus=cpus_for(w),
        seed=SEEDS[0], repeat=len(SEEDS), jobs=jobs)]
    return scale_rows(summarize(records))


def pick(rows, backend, workload, n, key="speedup"):
    r = next(x for x in rows if (x["variant"], x["workload"], x["ncpus"]) == (backend, workload, n))
    return r[key] if key == "speedup" else r[key]["mean"]


def by_cell(records) -> dict:
    return {(r["workload"], r["ncpus"], r["backend"]): r for r in records}


def ablation(jobs) -> tuple[list, dict]:
    """slab/kmem_map throughput and kmem_map/slab cycles per operation, per cell and switch."""
    specs = []
    for w, n in CELLS:
        for _, opts in SWITCHES:
            specs += [RunSpec("slab", w, n, options=opts),
                      RunSpec("kmem_map", w, n, options={k: v for k, v in opts.items() if k != "idle_zero"})]
    recs = iter(run_grid(specs, jobs))
    rows, got = [], {}
    for w, n in CELLS:
        for name, _ in SWITCHES:
            s, k = next(recs), next(recs)
            thr = s["sim"]["throughput_ops_per_mcycle"] / k["sim"]["throughput_ops_per_mcycle"]
            cpo = k["sim"]["cycles_per_op"] / s["sim"]["cycles_per_op"]
            got[w, n, name] = (thr, cpo, s, k)
            rows.append([f"{w} {n}" if name == SWITCHES[0][0] else "", name, f"x{thr:.2f}",
                         f"{s['sim']['cycles_per_op']:,.0f}", f"{k['sim']['cycles_per_op']:,.0f}", f"x{cpo:.2f}",
                         f"{s['latency']['malloc']['max']:,}", f"{k['latency']['malloc']['max']:,}"])
    return rows, got


def warmup_table(measured, whole) -> list:
    """Per workload at 4 CPUs: cycles per operation and the worst malloc, warm-up included and not."""
    rows = []
    for w in WORKLOADS:
        for b in ("slab", "kmem_map"):
            m, a = measured[w, 4, b], whole[w, 4, b]
            rows.append([w if b == "slab" else "", b, f"{m['warmup']['ops']:,}",
                         f"{a['sim']['cycles_per_op']:,.0f}", f"{m['sim']['cycles_per_op']:,.0f}",
                         f"{a['latency']['malloc']['max']:,}", f"{m['latency']['malloc']['max']:,}",
                         f"{a['memory']['overhead_ratio']:.2f}", f"{m['memory']['overhead_ratio']:.2f}"])
    return rows


def latency_rows(measured, cells) -> list:
    rows = []
    for w, n in cells:
        for b in ("slab", "kmem_map"):
            lat = measured[w, n, b]["latency"]["malloc"]
            rows.append([f"{w} {n}" if b == "slab" else "", b, f"{lat['mean']:,.0f}",
                         *(f"{lat[k]:,}" for k in ("p50", "p90", "p99", "p999", "max"))])
    return rows


def short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def check(claim: str, ok: bool) -> None:
    """A sentence of the page must still be true of the figures."""
    if not ok:
        raise SystemExit(f"docs/results.md says something the figures no longer show: {claim}")


# The headline ratios, each as (workload, CPUs, A, B, metric): A/B of the metric.
HEADLINES = [("tty", 4, "slab", "kmem_map", "sim.throughput_ops_per_mcycle"),
             ("tty", 4, "kmem_map", "slab", "sim.cycles_per_op"),
             ("fs", 4, "slab", "kmem_map", "sim.throughput_ops_per_mcycle"),
             ("scsi", 4, "slab", "kmem_map", "sim.throughput_ops_per_mcycle"),
             ("scsi", 1, "slab", "kmem_map", "memory.overhead_ratio"),
             ("larson", 4, "slab", "kmem_map", "sim.throughput_ops_per_mcycle"),
             ("net", 4, "kmem_map", "slab", "sim.cycles_per_op"),
             ("prodcons", 2, "slab", "kmem_map", "sim.throughput_ops_per_mcycle")]
METRIC_NAMES = {"sim.throughput_ops_per_mcycle": "throughput", "sim.cycles_per_op": "cycles/op",
                "memory.overhead_ratio": "overhead"}
CROSS_POINTS = 9                     # the sweep that locates a crossover: low..high, inclusive


def headline_sensitivity(jobs) -> tuple[list, dict]:
    """Each headline ratio over RANGES (kalloc.sweep.sensitivity: every price at its low and
    its high, the others nominal): [lowest, nominal, highest], the price with the largest
    swing, and for each price under which the ratio crosses 1, a CROSS_POINTS sweep of it
    from its low to its high and the interpolated crossing."""
    rows, out = [], {}
    for w, n, a, b, metric in HEADLINES:
        sens = sensitivity(w, a, b, n, metric, jobs=jobs)
        values = [v for r in sens for v in (r["value_low"], r["value_high"]) if v is not None]
        nominal, hinge = sens[0]["value_nominal"], sens[0]
        crosses = []
        for r in (r for r in sens if r["flips"]):
            key = f"cost.{r['price']}"
            recs = run_sweep(sweep_specs([f"{key}={r['low']}:{r['high']}:{CROSS_POINTS}"], [a, b], [w], n), jobs)
            crosses += [(r["price"], x["value"]) for x in crossovers(ratio_points(recs, a, b, metric), [key])]
        out[w, n, metric] = {"low": min(values), "nominal": nominal, "high": max(values),
                             "hinge": hinge, "crosses": crosses}
        rows.append([f"{w} {n} CPU{'s' if n > 1 else ''}", f"{a}/{b} {METRIC_NAMES[metric]}",
                     f"[{min(values):.2f}, {nominal:.2f}, {max(values):.2f}]",
                     f"{hinge['price']} ({hinge['low']:,} .. {hinge['high']:,}): "
                     f"{hinge['value_low']:.2f} .. {hinge['value_high']:.2f}" if hinge["swing"] else "no price moves it",
                     "; ".join(f"{p} = {x:,.0f}" for p, x in crosses) or "none in range"])
    return rows, out


def main(jobs: int = 2) -> None:
    os.chdir(DOCS.parent)             # the traces' paths, as the records name them, from the checkout
    default = run_grid(specs_for(["slab", "kmem_map"], WORKLOADS, [1, 2, 4], [0]), jobs)
    whole = run_grid(specs_for(["slab", "kmem_map"], WORKLOADS, [4], [0], warmup=0), jobs)
    measured, whole = by_cell(default), by_cell(whole)
    rows = scaling(jobs)
    by_wl = {w: [r for r in rows if r["workload"] == w] for w in WORKLOADS}
    plot_compare(summarize(default), str(DOCS / "results-compare.png"))
    plot_scale(by_wl["tty"], str(DOCS / "results-scale-tty.png"))
    plot_scale(by_wl["prodcons"], str(DOCS / "results-scale-prodcons.png"))
    abl_rows, abl = ablation(jobs)
    sens_rows, sens = headline_sensitivity(jobs)
    larson8 = {r["backend"]: r["panic"] for r in run_grid(specs_for(["slab", "kmem_map"], ["larson"], [8], [0]), jobs)}
    check("larson at 8 CPUs ends at the type limit on both backends", all(larson8.values()))
    traces = [r for n in ("build", "exec", "fs")
              for r in replay_backends(f"tests/traces/{n}.perf.txt.xz", [("slab", None), ("kmem_map", None)],
                                       pipeline=False)]
    tr = {(r["workload"], r["backend"]): r for r in traces}
    build_s, build_k = tr["trace:tests/traces/build.perf.txt.xz", "slab"], tr["trace:tests/traces/build.perf.txt.xz", "kmem_map"]
    thr = lambda b, w, n: pick(rows, b, w, n, "throughput_ops_per_mcycle")   # noqa: E731
    cpo = lambda w, n, b: measured[w, n, b]["sim"]["cycles_per_op"]         # noqa: E731
    f = {
        "tty_slab": pick(rows, "slab", "tty", 8), "tty_kmem": pick(rows, "kmem_map", "tty", 8),
        "tty4_thr": abl["tty", 4, SWITCHES[0][0]][0], "tty4_cpo": abl["tty", 4, SWITCHES[0][0]][1],
        "tty4_thr_coh": abl["tty", 4, "coherence=false"][0], "tty4_cpo_coh": abl["tty", 4, "coherence=false"][1],
        "tty4_kmem_cpo": cpo("tty", 4, "kmem_map"), "tty4_slab_cpo": cpo("tty", 4, "slab"),
        "tty4_share_k": 100 * measured["tty", 4, "kmem_map"]["sim"]["allocator_share"],
        "tty4_share_s": 100 * measured["tty", 4, "slab"]["sim"]["allocator_share"],
        "tty1_cpo": abl["tty", 1, SWITCHES[0][0]][1], "tty1_cpo_smp": abl["tty", 1, "kernel_build=smp"][1],
        "tty4_giant": abl["tty", 4, "giant=true (what-if)"][0],
        "fs4_thr": abl["fs", 4, SWITCHES[0][0]][0], "fs4_thr_sync": abl["fs", 4, "tlb_model=sync"][0],
        "fs4_slab_cpo": cpo("fs", 4, "slab"), "fs4_slab_cpo_sync": abl["fs", 4, "tlb_model=sync"][2]["sim"]["cycles_per_op"],
        "fs4_tlb_ipis": measured["fs", 4, "slab"]["counters"]["tlb_ipis"],
        "fs4_max_s": measured["fs", 4, "slab"]["latency"]["malloc"]["max"],
        "scsi4_thr": abl["scsi", 4, SWITCHES[0][0]][0], "scsi4_thr_whole": abl["scsi", 4, "lock_hold=whole"][0],
        "scsi4_thr_coh": abl["scsi", 4, "coherence=false"][0],
        "scsi1_over_s": measured["scsi", 1, "slab"]["memory"]["overhead_ratio"],
        "scsi1_over_k": measured["scsi", 1, "kmem_map"]["memory"]["overhead_ratio"],
        "larson4_thr": abl["larson", 4, SWITCHES[0][0]][0], "larson4_thr_coh": abl["larson", 4, "coherence=false"][0],
        "larson4_over_s": measured["larson", 4, "slab"]["memory"]["overhead_ratio"],
        "larson4_over_k": measured["larson", 4, "kmem_map"]["memory"]["overhead_ratio"],
        "net4_thr": abl["net", 4, SWITCHES[0][0]][0], "net4_cpo": abl["net", 4, SWITCHES[0][0]][1],
        "net4_passive": thr("slab-passive", "net", 4) / thr("kmem_map", "net", 4),
        "pc2_thr": abl["prodcons", 2, SWITCHES[0][0]][0], "pc2_thr_coh": abl["prodcons", 2, "coherence=false"][0],
        "pc2_passive": thr("slab-passive", "prodcons", 2) / thr("kmem_map", "prodcons", 2),
        "pc2_drain": abl["prodcons", 2, "ipi_drain=false"][0],
        "pc2_ipis": measured["prodcons", 2, "slab"]["counters"]["ipis"],
        "pc2_irqs": measured["prodcons", 2, "slab"]["counters"]["ipi_interrupts"],
        "warm_over_diff": max(abs(whole[w, 4, b]["memory"]["overhead_ratio"] - measured[w, 4, b]["memory"]["overhead_ratio"])
                              for w in WORKLOADS for b in ("slab", "kmem_map")),
        "tty4_warm_max": whole["tty", 4, "slab"]["latency"]["malloc"]["max"],
        "tty4_meas_max": measured["tty", 4, "slab"]["latency"]["malloc"]["max"],
        "build_cpo_s": build_s["sim"]["cycles_per_op"], "build_cpo_k": build_k["sim"]["cycles_per_op"],
        "build_tlb_s": build_s["counters"]["tlb_ipis"],
        "pc2_sens_lo": sens["prodcons", 2, "sim.throughput_ops_per_mcycle"]["low"],
        "pc2_sens_hi": sens["prodcons", 2, "sim.throughput_ops_per_mcycle"]["high"],
        "tty4_sens_lo": sens["tty", 4, "sim.throughput_ops_per_mcycle"]["low"],
        "tty4_sens_hi": sens["tty", 4, "sim.throughput_ops_per_mcycle"]["high"],
        "net4_sens_lo": sens["net", 4, "sim.cycles_per_op"]["low"],
        "net4_sens_hi": sens["net", 4, "sim.cycles_per_op"]["high"],
    }
    # --- the claims the text makes ---
    check("tty at 4 CPUs: slab ahead of kmem_map in throughput and in cycles per operation",
          f["tty4_thr"] > 1 and f["tty4_cpo"] > 1)
    check("tty at 4 CPUs: without shared lines most of kmem_map's extra cost goes", f["tty4_cpo_coh"] < f["tty4_cpo"] / 1.5)
    check("tty at 1 CPU: kmem_map's cycles/op gap grows with an SMP kernel", f["tty1_cpo_smp"] > f["tty1_cpo"])
    check("tty: giant narrows the slab's lead", f["tty4_giant"] < f["tty4_thr"])
    check("fs at 4 CPUs: per-page TLB IPIs cost the slab more than the synchronous model",
          f["fs4_slab_cpo"] > f["fs4_slab_cpo_sync"])
    check("scsi at 1 CPU: slab's overhead above kmem_map's", f["scsi1_over_s"] > f["scsi1_over_k"])
    check("larson at 4 CPUs: slab's overhead above kmem_map's", f["larson4_over_s"] > f["larson4_over_k"])
    check("prodcons at 2 CPUs: coherence decides who is ahead", (f["pc2_thr"] > 1) != (f["pc2_thr_coh"] > 1)
          or abs(f["pc2_thr"] - 1) < 0.05)
    check("the warm-up holds the worst tty malloc", f["tty4_warm_max"] > f["tty4_meas_max"])
    check("build trace: slab costlier per operation than kmem_map", f["build_cpo_s"] > f["build_cpo_k"])
    check("tty at 4 CPUs: the slab stays ahead over every price range", f["tty4_sens_lo"] > 1)
    check("prodcons at 2 CPUs: the verdict flips within the price ranges",
          f["pc2_sens_lo"] < 1 < f["pc2_sens_hi"])
    flipping = [f"{w} at {n} CPU{'s' if n > 1 else ''}" for (w, n, _), v in sens.items() if v["low"] < 1 < v["high"]]
    remote = [sens[w, 4, "sim.throughput_ops_per_mcycle"] for w in ("scsi", "larson")] + [
        sens["prodcons", 2, "sim.throughput_ops_per_mcycle"]]
    check("the verdicts with remote frees hinge on ipi_send and flip within its range",
          all(v["hinge"]["price"] == "ipi_send" and any(p == "ipi_send" for p, _ in v["crosses"]) for v in remote))
    check("net at 4 CPUs: its mbufs from caches (vm_zones on kmem_map), the verdict holds over the ranges",
          not f["net4_sens_lo"] < 1 < f["net4_sens_hi"])
    ipi_x = sorted(x for v in remote for p, x in v["crosses"] if p == "ipi_send")
    text = TEMPLATE.format(
        compare=compare_table(default),
        warmup=tabulate(warmup_table(measured, whole), headers=[
            "workload", "backend", "warm-up ops", "cycles/op (all)", "cycles/op (measured)",
            "malloc max (all)", "malloc max (measured)", "overhead (all)", "overhead (measured)"],
            disable_numparse=True),
        latency=tabulate(latency_rows(measured, [("tty", 4), ("fs", 4), ("scsi", 4), ("prodcons", 2)]),
                         headers=["cell", "backend", "mean", "p50", "p90", "p99", "p999", "max"],
                         disable_numparse=True),
        ablation=tabulate(abl_rows, headers=["cell", "mechanisms", "slab/kmem_map ops/Mcycle", "slab cycles/op",
                                             "kmem_map cycles/op", "kmem_map/slab cycles/op", "slab malloc max",
                                             "kmem_map malloc max"], disable_numparse=True),
        sensitivity=tabulate(sens_rows, headers=["cell", "ratio", "[low, nominal, high]", "hinges most on: price (range): ratio",
                                                 "crossover (ratio = 1)"], disable_numparse=True),
        flipping=", ".join(flipping) or "none",
        ipi_x_lo=f"{ipi_x[0]:,.0f}", ipi_x_hi=f"{ipi_x[-1]:,.0f}",
        tty4_hinge=sens["tty", 4, "sim.throughput_ops_per_mcycle"]["hinge"]["price"],
        scale="\n".join(f"### {w}\n\n```\n{scale_table(by_wl[w])}```\n" for w in WORKLOADS),
        traces=compare_table(traces), larson8_slab=short(larson8["slab"]), larson8_kmem=short(larson8["kmem_map"]),
        cross_points=CROSS_POINTS,
        **{k: (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}") for k, v in f.items()})
    (DOCS / "results.md").write_text(text)


TEMPLATE = """# Results: slab vs kmem_map, today

Produced by `python docs/make_results.py` (a few minutes on 2 cores) from the code as it is; every
figure below is filled in by that script, and the script stops if a sentence here no longer holds
of its figures. Simulated machine: i386, 64 MiB, the 2003 cost model and its mechanisms
([cost-model.md](cost-model.md)); workloads at their calibrated defaults
([calibration.md](calibration.md)); every figure is of the **measured phase**, after each workload's
warm-up ([comparing.md](comparing.md)); two seeds per cell in the scaling tables.

What a verdict here depends on: the mechanism table below switches each mechanism off in turn for
the cell that carries a verdict, and the sensitivity table shows each headline ratio over the
documented range of every price ([cost-model.md](cost-model.md), `kalloc.costs.RANGES`), with
the price it hinges on and where it flips. The ± in the scaling tables is seed variation only.
Published allocator results (McKusick & Karels 1988, Bonwick 1994, DragonFly 2010) and the slab
announcement's claims, each beside kalloc's figure, are in [reproductions.md](reproductions.md).

## The default comparison (`kalloc compare`)

```
{compare}```

![throughput and memory grown per workload](results-compare.png)

## Warm-up and steady state

The same streams at 4 CPUs with the warm-up counted (`--warmup 0`, "all") and without it
("measured", the default). The warm-up is where each CPU creates its first zones and fills its live
set: it holds the slab's worst mallocs (tty: {tty4_warm_max} cycles with it, {tty4_meas_max} without:
a new zone's bzero and page mapping under a contended `kernel_map` lock), and part of the slab's
cycles per operation on tty, fs and larson. The memory figures hardly move (the largest difference
in overhead is {warm_over_diff}): at the calibrated sizes the footprint peaks after the warm-up,
set by the live set rather than by the first zones.

```
{warmup}
```

## Tails beside means

malloc latency in cycles, lock waiting included (measured phase).

```
{latency}
```

## What produces each verdict: the mechanisms, one at a time

Each cell with all mechanisms on (the default), then with one switched off (docs/cost-model.md says
what each models and its source), on both backends: the ratio of throughputs (slab over kmem_map,
higher is better for the slab), each backend's cycles per allocator operation, and their ratio.

```
{ablation}
```

## How much each verdict depends on the prices

Each headline ratio with every price of the cost model moved, one at a time, to the low and the
high end of its documented range, the others at their 2003 values (`kalloc sensitivity`, one seed):
the lowest and highest ratio so found beside the nominal, the price whose range moves the ratio
most, and, for every price under which the ratio crosses 1, where it crosses (a {cross_points}-point
sweep of that price from its low to its high, interpolated: `kalloc sweep --vary cost.PRICE=LO:HI:{cross_points}
--ratio A/B`). A ratio above 1 favours A. Verdicts that flip within the ranges: {flipping}.
To see one in full: `kalloc sensitivity --workload prodcons --backends slab,kmem_map --ncpus 2`.

```
{sensitivity}
```

**Reading it.** The CPU-local verdict holds over every range: on tty at 4 CPUs the slab's lead
stays between x{tty4_sens_lo} and x{tty4_sens_hi}, its size set mostly by `{tty4_hinge}`. Every verdict
that involves remote frees of malloc'd memory (scsi, larson, prodcons) hinges on `ipi_send`, the price of the
2003 slab's one IPI per remote free, which has the widest range of all (200 cycles, a modern APIC,
to 6,000, Lundell's 3 µs message): each flips within it, at an `ipi_send` between {ipi_x_lo} and
{ipi_x_hi} cycles. (`net` does not: its mbufs and clusters come from object caches, a vm_zone's
locked free list on kmem_map and malloc on the slab, and its ratio stays on one side over the
ranges, [{net4_sens_lo}, {net4_sens_hi}].) Until that price is pinned down for a given machine, those three are conditions,
not verdicts: the 2003 slab wins them where sending an IPI costs less than about that, and loses
them where it costs more. The memory verdicts (scsi at 1 CPU) depend on no price at all.

## What they show

**CPU-local loads (tty): the slab is ahead, and shared cache lines are why.** At 4 CPUs the slab's
throughput is x{tty4_thr} kmem_map's, and kmem_map spends x{tty4_cpo} the slab's cycles per
operation ({tty4_kmem_cpo} against {tty4_slab_cpo}). With `coherence=false` that gap falls to
x{tty4_cpo_coh}: most of kmem_map's extra cost is the lines every one of its operations writes under
the lock (the global `cpl`, the malloc_type, the bucket head, the kmemusage entry), each fetched
from the CPU that took the lock last, on top of the lock's own hand-off; the 2003 slab shares only
its malloc_type counters. The throughput gap is smaller than the cost gap because the allocator is a
small part of the work ({tty4_share_s}% of busy cycles on slab, {tty4_share_k}% on kmem_map).
Over 1 to 8 CPUs the slab's throughput grows x{tty_slab}, kmem_map's x{tty_kmem}. At 1 CPU both run a
UP kernel, no lock prefix (kmem_map x{tty1_cpo} the slab's cycles per operation; x{tty1_cpo_smp} with
`kernel_build=smp`): Bonwick's "bucket about equal to slab" shape. Under `giant=true`, the 2003
reality of all kernel work under the MP lock, the lead shrinks to x{tty4_giant}: the per-CPU design
could not yet show.

**fs: the slab's 16-64 KiB buffers are whole pages from kmem_slab_alloc, and every page is a TLB
IPI.** Those requests go to `kmem_slab_alloc`/`kmem_slab_free` (sizes from ZoneLimit and page
multiples take whole pages), and in 2003 `pmap_enter` and the page-by-page `kmem_slab_free` each
send an all-but-self invalidation IPI ({fs4_tlb_ipis} on slab at 4 CPUs), which every other CPU takes
as an interrupt. That is the slab's worst malloc here ({fs4_max_s} cycles) and most of its cycles per
operation ({fs4_slab_cpo}; {fs4_slab_cpo_sync} under the synchronous `tlb_model=sync`). kmem_map's
large blocks pay the same per page, under its lock. Throughput: x{fs4_thr} (x{fs4_thr_sync} with
`sync`).

**scsi and larson: memory.** Each slab zone is ZoneSize bytes (32 KiB at 64 MiB) per size class per
CPU. scsi's live set is a few commands deep (calibrated from the block layer's live objects), so at
1 CPU its overhead is {scsi1_over_s} against kmem_map's {scsi1_over_k}; larson's 16-1024-byte slots
over 4 CPUs give {larson4_over_s} against {larson4_over_k}. kmem_map's power-of-two buckets waste up
to half of each chunk instead (internal fragmentation in the JSON), and never give a page back.
scsi's M_ZERO CCBs also show the lock-hold rule: kmem_map zeroes after `splx`, so holding its lock
across the bzero (`lock_hold=whole`) moves the ratio from x{scsi4_thr} to x{scsi4_thr_whole}.
Throughput at 4 CPUs: scsi x{scsi4_thr} (x{scsi4_thr_coh} without shared lines), larson
x{larson4_thr} (x{larson4_thr_coh}).

**Cross-CPU loads (net, prodcons): one IPI per remote free against shared lines.** Every 2003 slab
free of another CPU's chunk is a hardware IPI (1,500 cycles to send, an interrupt of 1,000 on the
owner), against kmem_map's locked bucket work. On `prodcons` at 2 CPUs the two are even (x{pc2_thr};
without shared lines kmem_map would lead, x{pc2_thr_coh}). `net` is rate-bound: its packets arrive
at the NIC's rate (the gaps are idle time), so its throughput is that rate on every CPU count and
backend (x{net4_thr} at 4 CPUs), and the comparison is its cost: kmem_map spends x{net4_cpo} the
slab's cycles per operation. The IPI queue's drain hardly matters at
these rates ({pc2_ipis} IPIs, {pc2_irqs} interrupts on prodcons; x{pc2_drain} without it): the
messages rarely queue. The passive remote free (`remote_free=passive`, 2010) sends almost no IPI:
x{pc2_passive} of kmem_map on prodcons at 2 CPUs, x{net4_passive} on net at 4.

**Mechanisms that do not move a verdict.** DragonFly 2003 had no idle-loop page zeroing
([research/mechanisms.md](research/mechanisms.md) §1.5), and FreeBSD 4.8's malloc never asks for
zeroed pages, so `idle_zero` changes nothing for either backend's malloc; `--set
slab.idle_zero=true`, a what-if, only spares the zeroing of the few zones made after the warm-up.

## Scaling

![tty: throughput and lock wait against CPUs](results-scale-tty.png)
![prodcons: throughput and lock wait against CPUs](results-scale-prodcons.png)

{scale}
larson stops at 4 CPUs: its calibrated live set, 2,350 slots of 16-1024 bytes per CPU, is 9-10 MB at
8 CPUs, more than the 64 MiB kernel allows one malloc type (slab: `{larson8_slab}`; kmem_map:
`{larson8_kmem}`).

## Real traces (Linux kmem tracepoints, 2 CPUs)

The three traces in `tests/traces/` ([replay.md](replay.md)), replayed on the same 64 MiB machine.
A replay is open-loop: the trace's timestamps fix the makespan, so throughput is the same on both
backends, and `thr vs 1st` compares cycles per operation. On the build trace the slab spends
{build_cpo_s} cycles per operation against kmem_map's {build_cpo_k}: a modern kernel's page-sized
and larger requests (4096-byte buffers are common in these traces) are whole pages from
kmem_slab_alloc on the 2003 slab, each page zeroed on M_ZERO, mapped and later unmapped with a TLB
IPI per page ({build_tlb_s} in all), where kmem_map keeps 4096 and 8192 bytes in buckets whose pages
it never returns. DragonFly changed that rule on 2007-06-07.

```
{traces}```
"""

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
