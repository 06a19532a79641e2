"""Calibration figures for the default workloads, from the bundled real traces.

Run ``python docs/calibration.py`` (from the repository root, or anywhere: paths are found
from this file) to print the Markdown report; ``python docs/calibration.py --write``
also writes it to docs/calibration.md.  The workloads' docstrings
(plugins/kalloc_plugins/workloads/) cite its figures.

The traces (tests/traces/*.perf.txt.xz, see tests/traces/README.md) are ``perf script``
output of Linux 6.18's kmem tracepoints on a 2-CPU machine.  They are read with kalloc's
own parser and replay rules (kalloc.replay.parse.TraceParser, kalloc.replay.rules.replay_ops):

* rates and gaps are taken from every parsed event (allocations and frees, as recorded);
* live sets, lifetimes and cross-CPU frees from the operations the replay rules give: an
  object counts from its allocation to its (recorded or implicit) free, so objects allocated
  before the trace began are not in the live set (their frees are ``unknown_frees``) and
  objects still live at the end have no lifetime (they are counted as ``live at end``);
* cycles are seconds times the cost model's ``clock_hz`` (2.0 GHz, kalloc.costs.CostModel).
  perf prints microseconds, so a gap is a multiple of 2000 cycles; gaps of 0 are events in
  the same microsecond.
* the mean live set is time-weighted over the trace.

Families group the cache names and kmalloc call sites (``tname`` of the parser) that
correspond to a kalloc workload; the traces contain no networking (one skbuff event in
exec), no tty line discipline (only ``tty_open``'s 16 kmallocs a trace) and no SCSI
(a virtio-blk disk: bio, biovec and virtblk's scatter lists, blk-mq preallocates requests).
"""

from __future__ import annotations

import statistics
import sys
from bisect import bisect_left
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kalloc.costs import CostModel  # noqa: E402
from kalloc.replay.parse import ALLOC, TraceParser, open_trace  # noqa: E402
from kalloc.replay.rules import MALLOC, TraceStats, replay_ops  # noqa: E402

TRACES = ("build", "exec", "fs")
HZ = CostModel().clock_hz
BUSY_GAP = 100e-6        # gaps up to 100 us: the CPU is taken to be busy in the kernel between them


def family(tname: str) -> str | None:
    """The kalloc workload family of a cache name / kmalloc call-site function."""
    if tname in ("dentry", "__d_alloc", "extent_status", "buffer_head", "radix_tree_node") \
            or tname.endswith("inode_cache") or tname.startswith("ext4_"):
        return "fs-metadata"
    if tname in ("names_cache", "filp", "lsm_file_cache"):
        return "fs-path-file"
    if tname.startswith(("bio-", "biovec-", "virtblk_", "blk_", "bvec_", "__sg_")):
        return "block"
    if tname.startswith("tty") or tname.startswith("n_tty"):
        return "tty"
    if "skb" in tname or "skbuff" in tname or tname.startswith(("sock", "tcp", "udp", "inet", "net")):
        return "net"
    return None


FAMILIES = ("fs-metadata", "fs-path-file", "block", "tty", "net")
REMOTE = "freed-remote"    # not a call-site family: the objects freed on another CPU than their allocation


def q(xs, p):
    """The p-quantile (0..1) of sorted xs, nearest rank; None if empty."""
    if not xs:
        return None
    return xs[min(len(xs) - 1, max(0, int(round(p * (len(xs) - 1)))))]


class Group:
    """Figures of one set of objects (a whole trace or a family)."""

    def __init__(self):
        self.sizes = []
        self.life_s = []
        self.life_ev = []
        self.frees = self.cross = 0
        self.live_bytes = self.live_n = 0
        self.peak_bytes = self.peak_n = 0
        self.area_bytes = self.area_n = 0.0
        self.last_ts = None

    def tick(self, ts):
        if self.last_ts is not None:
            dt = ts - self.last_ts
            self.area_bytes += dt * self.live_bytes
            self.area_n += dt * self.live_n
        self.last_ts = ts

    def alloc(self, ts, size):
        self.tick(ts)
        self.sizes.append(size)
        self.live_bytes += size
        self.live_n += 1
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self.peak_n = max(self.peak_n, self.live_n)

    def free(self, ts, size, life_s, life_ev, cross):
        self.tick(ts)
        self.live_bytes -= size
        self.live_n -= 1
        self.life_s.append(life_s)
        self.life_ev.append(life_ev)
        self.frees += 1
        self.cross += cross


def analyse(path):
    parser = TraceParser()
    stats = TraceStats()
    per_cpu_last, gaps = {}, {}
    counts = {}                         # cpu -> [allocs, frees]
    first = last = None
    nev = [0]

    def events():
        nonlocal first, last
        for ev in parser.events(open_trace(path)):
            ts, cpu, kind = ev[0], ev[1], ev[2]
            if first is None:
                first = ts
            last = ts
            c = counts.setdefault(cpu, [0, 0])
            c[kind != ALLOC] += 1
            prev = per_cpu_last.get(cpu)
            if prev is not None:
                gaps.setdefault(cpu, []).append(ts - prev)
            per_cpu_last[cpu] = ts
            nev[0] += 1
            yield ev

    whole = Group()
    fams = {f: Group() for f in FAMILIES}
    remote = Group()                    # live set from the lifetimes (time-weighted), no peak
    remote.peak_bytes = remote.peak_n = None
    live = {}                           # key -> (ts, event index, cpu, size, family)
    for op in replay_ops(events(), stats):
        idx = nev[0]
        if op[1] == MALLOC:
            cpu, _, key, size, _flags, tname, ts = op
            fam = family(tname)
            live[key] = (ts, idx, cpu, size, fam)
            whole.alloc(ts, size)
            if fam:
                fams[fam].alloc(ts, size)
        else:
            cpu, _, key, ts = op
            ats, aidx, acpu, size, fam = live.pop(key)
            args = (ts, size, ts - ats, idx - aidx, acpu != cpu)
            whole.free(*args)
            if fam:
                fams[fam].free(*args)
            if acpu != cpu:
                remote.sizes.append(size)
                remote.life_s.append(ts - ats)
                remote.life_ev.append(idx - aidx)
                remote.frees += 1
                remote.cross += 1
                remote.area_bytes += size * (ts - ats)
                remote.area_n += ts - ats
    for g in (whole, *fams.values()):
        g.tick(last)

    fams[REMOTE] = remote
    return {"duration": last - first, "counts": counts, "gaps": gaps, "stats": stats,
            "whole": whole, "fams": fams, "live_end": len(live)}


def fmt(x, nd=0):
    if x is None:
        return "-"
    if isinstance(x, float) and nd:
        return f"{x:,.{nd}f}"
    return f"{x:,.0f}"


def group_rows(name, g, dur, ncpus):
    s = sorted(g.sizes)
    ls, le = sorted(g.life_s), sorted(g.life_ev)
    n = len(s)
    below = [sum(1 for x in s if x < b) / n * 100 if n else None for b in (128, 512, 2048, 16384)]
    return {
        "name": name, "allocs": n,
        "allocs_per_cpu_s": n / dur / ncpus if dur else None,
        "mean_live_bytes": g.area_bytes / dur if dur else None, "peak_live_bytes": g.peak_bytes,
        "mean_live_n": g.area_n / dur if dur else None, "peak_live_n": g.peak_n,
        "size_q": [q(s, p) for p in (0.1, 0.5, 0.9, 0.99)] + [s[-1] if s else None],
        "mean_size": statistics.fmean(s) if s else None,
        "below": below,
        "cross": g.cross / g.frees * 100 if g.frees else None,
        "life_s": (q(ls, 0.5), q(ls, 0.9)), "life_ev": (q(le, 0.5), q(le, 0.9)),
        "frees": g.frees,
    }


def report():
    out = ["# Calibration figures from the bundled traces", "",
           "Generated by `python docs/calibration.py --write`; do not edit by hand.  How each figure is",
           "computed is in the script's docstring.  The default workloads' PARAMS cite these figures",
           f"(plugins/kalloc_plugins/workloads/).  Cycles at the cost model's clock_hz = {HZ / 1e9:.1f} GHz.", ""]
    results = {t: analyse(ROOT / "tests" / "traces" / f"{t}.perf.txt.xz") for t in TRACES}

    out += ["## Whole traces", "",
            "| figure | " + " | ".join(TRACES) + " |", "|---|" + "---|" * len(TRACES)]
    rows = {}
    for t, r in results.items():
        dur, ncpus = r["duration"], len(r["counts"])
        allg = sorted(x for gs in r["gaps"].values() for x in gs)
        busy = [x for x in allg if x <= BUSY_GAP]
        st = r["stats"]
        rows[t] = {
            "duration (s)": f"{dur:.2f}",
            "CPUs": str(ncpus),
            "events": fmt(st.events),
            "allocations / CPU / s": fmt(st.allocs / dur / ncpus),
            "frees / CPU / s": fmt(st.frees / dur / ncpus),
            "events / s, per CPU": " / ".join(fmt(sum(c) / dur) for _, c in sorted(r["counts"].items())),
            "gap between events on a CPU, mean (cycles)": fmt(statistics.fmean(allg) * HZ),
            "gap, median (cycles)": fmt(q(allg, 0.5) * HZ),
            "gap, p25 / p75 / p90 (cycles)": " / ".join(fmt(q(allg, p) * HZ) for p in (0.25, 0.75, 0.9)),
            f"gaps <= {BUSY_GAP * 1e6:.0f} us: share / mean (cycles)":
                f"{len(busy) / len(allg) * 100:.0f} % / {fmt(statistics.fmean(busy) * HZ)}",
            "events in gaps <= 100 us per CPU-second of those gaps":
                fmt(len(busy) / sum(busy) if sum(busy) else 0),
        }
        g = group_rows("all", r["whole"], dur, ncpus)
        rows[t].update(live_rows(g))
        rows[t]["live at end / unknown frees / implicit frees"] = \
            f"{fmt(r['live_end'])} / {fmt(st.unknown_frees)} / {fmt(st.implicit_frees)}"
    for k in rows[TRACES[0]]:
        out.append(f"| {k} | " + " | ".join(rows[t][k] for t in TRACES) + " |")

    out += ["", "## Families", "",
            "Per trace; a family with fewer than 20 allocations in a trace is left out.  "
            "`fs-metadata`: dentry, inode caches, ext4's kmallocs and caches, extent_status, "
            "buffer_head, radix_tree_node; `fs-path-file`: names_cache (getname's path buffer), "
            "filp, lsm_file_cache; `block`: bio-*, biovec-*, virtblk's scatter lists; `tty`: "
            "tty_open; `net`: skbuff/sock/net (none).  `freed-remote` is no call-site family but the "
            "objects whose free ran on another CPU than their allocation (what net, scsi, larson and "
            "prodcons hand between CPUs): its live set is their summed lifetimes over the trace's "
            "duration (no peak), and its share of frees on another CPU is 100 % by definition.", ""]
    keys = None
    table = []
    for t, r in results.items():
        dur, ncpus = r["duration"], len(r["counts"])
        for f in FAMILIES + (REMOTE,):
            g = r["fams"][f]
            if len(g.sizes) < 20:
                continue
            gr = group_rows(f, g, dur, ncpus)
            row = {"trace": t, "family": f, "allocations": fmt(gr["allocs"]),
                   "allocs / CPU / s": fmt(gr["allocs_per_cpu_s"]),
                   "share of trace's allocations": f"{gr['allocs'] / len(r['whole'].sizes) * 100:.1f} %"}
            row.update(live_rows(gr))
            keys = list(row)
            table.append(row)
    out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in table:
        out.append("| " + " | ".join(row[k] for k in keys) + " |")
    out += ["", f"Events parsed: {sum(r['stats'].events for r in results.values()):,}; "
            f"unparsed lines: {sum(r['stats'].unparsed for r in results.values())}.", ""]
    return "\n".join(out)


def live_rows(g):
    return {
        "live bytes (bytes_req): mean / peak": f"{fmt(g['mean_live_bytes'])} / {fmt(g['peak_live_bytes'])}",
        "live objects: mean / peak": f"{fmt(g['mean_live_n'])} / {fmt(g['peak_live_n'])}",
        "size p10 / p50 / p90 / p99 / max": " / ".join(fmt(x) for x in g["size_q"]),
        "mean size": fmt(g["mean_size"]),
        "share < 128 / 512 / 2048 / 16384 B": " / ".join(f"{x:.0f} %" for x in g["below"]),
        "frees on another CPU": "-" if g["cross"] is None else f"{g['cross']:.1f} %",
        "lifetime median / p90 (s)": " / ".join(fmt(x, 4) if x is not None else "-" for x in g["life_s"]),
        "lifetime median / p90 (events)": " / ".join(fmt(x) for x in g["life_ev"]),
    }


if __name__ == "__main__":
    text = report()
    print(text)
    if "--write" in sys.argv[1:]:
        (ROOT / "docs" / "calibration.md").write_text(text + "\n")
