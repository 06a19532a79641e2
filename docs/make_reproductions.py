"""Regenerate docs/reproductions.md: `python docs/make_reproductions.py` (about 15 s).

Published allocator results (docs/research/costs.md, "Published allocator results to
reproduce in shape") and the claims of the slab commit's announcement, each beside what
kalloc's code gives today.  Every kalloc figure in reproductions.md is filled in by this
script, and every sentence that says who wins or how far apart two figures are is checked
against the figures first (``check``): if the code changes so that a sentence stops being
true, the script stops with the sentence instead of writing a page that contradicts itself.

The functions ``mk_share``, ``mk_phases``, ``mk_passive``, ``mk_seed``, ``mk_bonwick`` and
``mk_fragmentation`` compute one reproduction each and take the workload sizes as
arguments, so tests/test_reproductions.py checks the same shapes on smaller runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


import kalloc
from kalloc import costs as _costs
from kalloc.harness import RunSpec, run_one

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
BACKENDS = ("slab", "kmem_map")



class ClaimFailed(AssertionError):
    pass


def check(cond: bool, claim: str) -> None:
    """A sentence of the page must hold for the figures beside it."""
    if not cond:
        raise ClaimFailed(f"reproductions.md would claim something false: {claim}")


def run(backend, workload, ncpus=1, **kw) -> dict:
    rec = run_one(RunSpec(backend, workload, ncpus, **kw))
    check(rec["panic"] is None, f"{backend}/{workload}/{ncpus} ran to its end ({rec['panic']})")
    return rec


def kalloc_cmd(*args: str) -> tuple[str, str]:
    """Run `kalloc ARGS` (this checkout's, with this interpreter): (the command as a user types
    it, its standard output)."""
    out = subprocess.run([sys.executable, "-m", "kalloc.cli", *args], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    return "kalloc " + " ".join(args), out


# --- 1a. McKusick & Karels: the allocator's share of kernel time ------------------------------
SHARE_WORKLOADS = ("tty", "net", "fs", "scsi")
# M&K measured malloc: mbufs, vnodes and inodes are malloc'd here, as before object caches
# (net's and fs's ``caches`` off), so that both backends are measured on malloc alone.
MALLOC_ONLY = {"net": {"caches": 0}, "fs": {"caches": 0}}


def mk_share(params: dict | None = None) -> dict:
    """sim.allocator_share (and cycles per operation) of the driver workloads at 1 CPU."""
    params = params or {}
    out = {}
    for w in SHARE_WORKLOADS:
        for b in BACKENDS:
            r = run(b, w, 1, params={**MALLOC_ONLY.get(w, {}), **params.get(w, {})})
            out[w, b] = {"share": r["sim"]["allocator_share"], "cpo": r["sim"]["cycles_per_op"]}
    return out


# --- 1b. McKusick & Karels: bucket memory is never given back ---------------------------------
def mk_phases(objects: int = 1000, cpus=(1, 2)) -> dict:
    out = {}
    for n in cpus:
        for b in BACKENDS:
            r = run(b, "phases", n, params={"objects": objects})
            m = r["memory"]
            out[n, b] = {"kept": m["end_footprint_bytes"] - m["boot_footprint_bytes"],
                         "peak": m["peak_growth_bytes"],
                         "slabs": sum(c["slabs"] for c in r["classes"])}
    return out


# --- 2. DragonFly 2010: passive remote free ---------------------------------------------------
def mk_passive(params: dict | None = None, cpus=(2, 4), workloads=("prodcons", "net")) -> dict:
    params = params or {}
    out = {}
    for w in workloads:
        for n in cpus:
            for mode in ("ipi", "passive"):
                r = run("slab", w, n, params=params.get(w, {}), options={"remote_free": mode})
                c = r["counters"]
                msgs = c["ipis"] + c["passive_ipis"]
                out[w, n, mode] = {"remote_frees": c["remote_frees"], "ipis": c["ipis"],
                                   "passive_ipis": c["passive_ipis"], "msgs": msgs,
                                   "per_free": msgs / c["remote_frees"],
                                   "thr": r["sim"]["throughput_ops_per_mcycle"]}
            out[w, n, "factor"] = out[w, n, "ipi"]["per_free"] / max(out[w, n, "passive"]["per_free"], 1e-12)
    return out


# --- 3. The seed's claims ---------------------------------------------------------------------
BANDS = [(8, 1, 127), (16, 128, 255), (32, 256, 511), (64, 512, 1023), (128, 1024, 2047),
         (256, 2048, 4095), (512, 4096, 8191), (1024, 8192, 16383)]
PHYSMEMS = ("32M", "64M", "128M", "256M", "1G")


def seed_zones() -> dict:
    """Zones and chunking, from `kalloc info`'s zone table (JSON, and the table itself)."""
    cmd, text = kalloc_cmd("info", "--backend", "slab", "--format", "json")
    info = json.loads(text)[0]
    sizes = [c["size"] for c in info["classes"]]
    bands = []
    for gran, lo, hi in BANDS:
        chunks = [s for s in sizes if (gran == 8 and s <= 128) or (gran > 8 and lo < s <= 2 * lo and s % gran == 0)]
        bands.append({"gran": gran, "lo": lo, "hi": hi, "chunks": chunks})
    out = {"cmd": cmd, "nzones": info["slab"]["nzones"], "nclasses": len(sizes), "bands": bands,
           "zone_limit": info["slab"]["zone_limit"]}
    out["table_cmd"], out["table"] = kalloc_cmd("info", "--backend", "slab")
    return out


def seed_zonesize(physmems=PHYSMEMS) -> list:
    """ZoneSize against RAM, from `kalloc info --physmem`."""
    zs = []
    for pm in physmems:
        cmd, text = kalloc_cmd("info", "--backend", "slab", "--physmem", pm, "--format", "json")
        s = json.loads(text)[0]["slab"]
        zs.append({"cmd": cmd, "physmem": pm, "zone_size": s["zone_size"], "boot_message": s["boot_message"]})
    return zs


def seed_align() -> dict:
    """Three allocations of each power of two from 8 to 16384, each backend, 1 CPU."""
    out = {}
    for b in BACKENDS:
        k = kalloc.boot(backend=b, ncpus=1, physmem="64M")
        t = k.malloc_type("devbuf")
        rows = []
        for shift in range(3, 15):
            size = 1 << shift
            vas = [k.malloc(size, t, kalloc.M_WAITOK, cpu=0) for _ in range(3)]
            rows.append({"size": size, "vas": vas,
                         "aligned": all(va % size == 0 for va in vas),
                         "page_aligned": all(va % 4096 == 0 for va in vas)})
        out[b] = rows
    return out


def seed_zero() -> dict:
    """malloc(0) on each backend: the address, its usable size (and the slab's ZERO_LENGTH_PTR)."""
    out = {}
    for b in BACKENDS:
        k = kalloc.boot(backend=b, ncpus=1, physmem="64M")
        t = k.malloc_type("devbuf")
        va = k.malloc(0, t, kalloc.M_WAITOK, cpu=0)
        out[b] = {"va": va, "usable": k.usable_size(va), "zlp": getattr(k.backend, "zero_length_ptr", None)}
        k.free(va, t, cpu=0)
    return out


def seed_owner() -> dict:
    """A chunk malloc'ed on CPU 0, freed on CPU 1 (the Python API, no harness)."""
    k = kalloc.boot(backend="slab", ncpus=2, physmem="64M")
    t = k.malloc_type("devbuf")
    va = k.malloc(100, t, kalloc.M_WAITOK, cpu=0)
    owner = k.backend.zones[va & k.backend.zone_base_mask].cpu
    before = dict(k.backend.counters(), ipis=k.machine.ipis)
    k.free(va, t, cpu=1)
    after = dict(k.backend.counters(), ipis=k.machine.ipis)
    return {"va": va, "owner": owner, "remote_frees": after["remote_frees"] - before["remote_frees"],
            "ipis": after["ipis"] - before["ipis"]}


def seed_remote(objects: int = 2000, table: bool = True) -> dict:
    """`kalloc run` of prodcons on 2 CPUs: every free remote, its IPI and where the handlers ran."""
    args = ("run", "--backend", "slab", "--workload", "prodcons", "--ncpus", "2", "--param", f"objects={objects}")
    cmd, text = kalloc_cmd(*args, "--format", "json")
    r = json.loads(text)
    r = r[0] if isinstance(r, list) else r
    c = r["counters"]
    out = {"cmd": cmd, "frees": r["ops"]["free"], "remote_frees": c["remote_frees"],
           "ipis": c["ipis"], "ipi_interrupts": c["ipi_interrupts"],
           "handler_count": r["latency"]["ipi_handler"]["count"],
           "free_mean": r["latency"]["free"]["mean"],
           "handler_cycles": [x["ipi_handler_cycles"] for x in r["cpus"]]}
    if table:
        out["table_cmd"], out["table"] = kalloc_cmd(*args)
    return out


def mk_seed() -> dict:
    return {"zones": seed_zones(), "zonesize": seed_zonesize(), "align": seed_align(), "zero": seed_zero(),
            "owner": seed_owner(), "remote": seed_remote()}


# --- 4. Bonwick 1994: an alloc+free pair --------------------------------------------------------
BONWICK_US = {"slab kmem_cache_alloc": 3.8, "4.4BSD kmem_alloc": 4.1, "slab kmem_alloc": 4.7}
BONWICK_MHZ = 40
BONWICK_MUTEX_US = 1.0             # a mutex_enter/exit pair; an alloc+free pair takes two


def mk_bonwick(params: dict | None = None) -> dict:
    """Cycles per allocator operation, same-CPU loops at 1 CPU (each workload's warm-up),
    under the 1994 preset, for a UP kernel (kernel_build=auto) and one with its SMP locks
    (kernel_build=smp, as Solaris 2.4's kernel always takes its mutexes)."""
    params = params or {}
    out = {}
    out["clock_hz"] = _costs.PRESETS["1994"].clock_hz
    for w in ("tty", "prodcons"):
        for b in BACKENDS:
            for build in ("auto", "smp"):
                r = run(b, w, 1, params=params.get(w, {}), costs={"preset": "1994"},
                        options={"kernel_build": build})
                cpo = r["sim"]["cycles_per_op"]
                out[w, b, build] = {"cpo": cpo, "pair": 2 * cpo,
                                    "pair_us": 2 * cpo / out["clock_hz"] * 1e6}
    out["published"] = {k: {"us": v, "pair": v * BONWICK_MHZ} for k, v in BONWICK_US.items()}
    return out


# --- Bonwick's fragmentation, beside overhead_ratio ----------------------------------------------
def mk_fragmentation(params: dict | None = None) -> dict:
    params = params or {}
    out = {}
    for w in ("fs", "larson"):
        for b in BACKENDS:
            r = run(b, w, 1, params=params.get(w, {}))
            out[w, b] = {"ratio": r["memory"]["overhead_ratio"], "mean": r["memory"]["mean_overhead_ratio"],
                         "grown": r["memory"]["peak_growth_bytes"],
                         "requested": r["memory"]["requested_at_peak_bytes"],
                         "classes": sum(1 for c in r["classes"] if c.get("slabs"))}
    return out


# --- the page ------------------------------------------------------------------------------------
def pct(x):
    return f"{100 * x:.1f} %"


def kib(n):
    return f"{n / 1024:,.0f} KiB"


def main() -> None:
    share = mk_share()
    ph = mk_phases()
    pas = mk_passive()
    seed = mk_seed()
    bon = mk_bonwick()
    frag = mk_fragmentation()
    f = {}

    # 1a
    rows = ["| workload | slab `allocator_share` | kmem_map `allocator_share` | slab cycles/op | kmem_map cycles/op |",
            "|---|---|---|---|---|"]
    for w in SHARE_WORKLOADS:
        s, k = share[w, "slab"], share[w, "kmem_map"]
        rows.append(f"| {w} | {pct(s['share'])} | {pct(k['share'])} | {s['cpo']:.0f} | {k['cpo']:.0f} |")
    f["share_table"] = "\n".join(rows)
    shares = [v["share"] for v in share.values()]
    f["share_min"], f["share_max"] = pct(min(shares)), pct(max(shares))
    check(max(shares) < 0.04, "every driver workload's allocator share is below M&K's four percent")
    check(all(share[w, "slab"]["share"] <= share[w, "kmem_map"]["share"] for w in SHARE_WORKLOADS),
          "at 1 CPU the slab's share is at most kmem_map's on every driver workload")
    f["share_top"] = max(SHARE_WORKLOADS, key=lambda w: share[w, "kmem_map"]["share"])
    check(f["share_top"] == "scsi", "scsi, with its M_ZERO CCBs, has the largest share")

    # 1b
    rows = ["| CPUs | kmem_map kept after all frees | slab kept after all frees | kmem_map / slab | kmem_map peak | slab peak |",
            "|---|---|---|---|---|---|"]
    for n in (1, 2):
        k, s = ph[n, "kmem_map"], ph[n, "slab"]
        rows.append(f"| {n} | {kib(k['kept'])} | {kib(s['kept'])} | x{k['kept'] / s['kept']:.0f} | "
                    f"{kib(k['peak'])} | {kib(s['peak'])} |")
        check(k["kept"] > 4 * s["kept"], f"after the phases kmem_map keeps over 4x the slab's memory ({n} CPUs)")
        check(k["kept"] >= 0.95 * k["peak"], f"kmem_map gives back (almost) nothing of its peak ({n} CPUs)")
    f["phases_table"] = "\n".join(rows)
    f["ph_ratio1"] = f"{ph[1, 'kmem_map']['kept'] / ph[1, 'slab']['kept']:.0f}"
    f["ph_slab_zones"] = ph[1, "slab"]["kept"] // 32768
    f["ph_kmem_sum"] = f"{1000 * (64 + 256 + 1024 + 4096):,}"
    check(ph[1, "slab"]["kept"] == 5 * 32768, "at 1 CPU the slab keeps exactly 5 zones (3 + zone_cache 2)")

    # 2
    rows = ["| workload | CPUs | remote frees | `ipi`: IPIs | IPIs per remote free | `passive`: IPIs + passive IPIs | messages per remote free | fewer messages |",
            "|---|---|---|---|---|---|---|---|"]
    factors = []
    for w in ("prodcons", "net"):
        for n in (2, 4):
            a, p = pas[w, n, "ipi"], pas[w, n, "passive"]
            fac = pas[w, n, "factor"]
            factors.append(fac)
            rows.append(f"| {w} | {n} | {a['remote_frees']:,} | {a['ipis']:,} | {a['per_free']:.2f} | "
                        f"{p['ipis']} + {p['passive_ipis']} | {p['per_free']:.4f} | x{fac:.0f} |")
            check(a["per_free"] == 1.0, f"2003 mode: exactly one IPI per remote free ({w}, {n} CPUs)")
            check(p["ipis"] == 0, f"passive mode sends no hardware IPI from kfree ({w}, {n} CPUs)")
    f["passive_table"] = "\n".join(rows)
    f["fac_min"], f["fac_max"] = f"{min(factors):.0f}", f"{max(factors):.0f}"
    check(min(factors) >= 100, "kalloc reaches DragonFly's 100x on every cell")
    f["pc_nmax_lo"], f["pc_nmax_hi"] = 63, 1018

    # 3
    z = seed["zones"]
    check(z["nzones"] == 72 and z["nclasses"] == 72, "72 zones, not 80, with ZoneLimit 16384")
    rows = ["| request bytes | chunking | chunk sizes | zones |", "|---|---|---|---|"]
    for bd in z["bands"]:
        ch = bd["chunks"]
        rows.append(f"| {bd['lo']}-{bd['hi']} | {bd['gran']} | {ch[0]}, {ch[1]}, ... {ch[-1]} | {len(ch)} |")
        check(all(c % bd["gran"] == 0 for c in ch), f"band {bd['lo']}-{bd['hi']} chunks are multiples of {bd['gran']}")
    check(sum(len(bd["chunks"]) for bd in z["bands"]) == 72, "the bands' chunk sizes are the 72 zones")
    f["bands_table"] = "\n".join(rows)
    f["zones_cmd"], f["table_cmd"] = z["cmd"], z["table_cmd"]
    lines = z["table"].splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Slab zones"))
    f["zones_excerpt"] = "\n".join([lines[0], "..."] + lines[start:start + 5] + ["..."] +
                                    [l for l in lines if l.startswith(("zone 15 ", "zone 23 ", "zone 71 "))])
    rows = ["| command | ZoneSize | boot message |", "|---|---|---|"]
    for r in seed["zonesize"]:
        rows.append(f"| `{r['cmd']}` | {r['zone_size'] // 1024}K | {r['boot_message']} |")
    f["zonesize_table"] = "\n".join(rows)
    zsz = [r["zone_size"] for r in seed["zonesize"]]
    check(min(zsz) == 32768 and max(zsz) == 131072 and zsz == sorted(zsz), "ZoneSize grows from 32K to 128K with RAM")
    check(seed["zonesize"][2]["zone_size"] == 65536, "exactly 128 MiB gives 64K, not the comment's 128K")
    rows = ["| size | slab addresses | slab aligned to size | kmem_map addresses | kmem_map aligned to size |",
            "|---|---|---|---|---|"]
    for s, k in zip(seed["align"]["slab"], seed["align"]["kmem_map"]):
        rows.append(f"| {s['size']} | {', '.join(hex(v) for v in s['vas'])} | {'yes' if s['aligned'] else 'no (page-aligned)' if s['page_aligned'] else 'no'} | "
                    f"{', '.join(hex(v) for v in k['vas'])} | {'yes' if k['aligned'] else 'no (page-aligned)' if k['page_aligned'] else 'no'} |")
    f["align_table"] = "\n".join(rows)
    sa = {r["size"]: r for r in seed["align"]["slab"]}
    check(all(sa[s]["aligned"] for s in sa if s <= 2048), "slab: 8..2048 are aligned to their size")
    check(all(sa[s]["page_aligned"] and not sa[s]["aligned"] for s in (8192, 16384)),
          "slab: 8192 and 16384 (the large path) are only page-aligned")
    check(all(r["aligned"] for r in seed["align"]["kmem_map"] if r["size"] <= 8192),
          "kmem_map: every power of two up to 8192 is aligned to its size")
    zs, zk = seed["zero"]["slab"], seed["zero"]["kmem_map"]
    check(zs["va"] == zs["zlp"] == 0xFFFFFFF8 and zs["usable"] == 0, "slab malloc(0) is ZERO_LENGTH_PTR, no memory")
    check(zk["va"] not in (None, 0) and zk["usable"] == 16, "kmem_map malloc(0) is a 16-byte chunk")
    f["zero_slab"], f["zero_kmem"], f["zero_kmem_usable"] = hex(zs["va"]), hex(zk["va"]), zk["usable"]
    o = seed["owner"]
    check(o["owner"] == 0 and o["remote_frees"] == 1 and o["ipis"] == 1, "a free on CPU 1 of CPU 0's chunk is one IPI")
    f["own_va"] = hex(o["va"])
    rm = seed["remote"]
    check(rm["remote_frees"] == rm["frees"] == rm["ipis"], "prodcons at 2 CPUs: every free is remote and one IPI")
    check(rm["handler_cycles"][1] == 0 and rm["handler_cycles"][0] > 0, "the handlers run on the owner, CPU 0")
    check(rm["free_mean"] < _costs.CostModel().ipi_latency, "the remote free returns before the owner's handler starts")
    f.update(remote_cmd=rm["cmd"], remote_frees=f"{rm['remote_frees']:,}", remote_ipis=f"{rm['ipis']:,}",
             remote_intr=f"{rm['ipi_interrupts']:,}", free_mean=f"{rm['free_mean']:,.0f}",
             h0=f"{rm['handler_cycles'][0]:,}", remote_table_cmd=rm["table_cmd"])
    keep = []
    for block in rm["table"].split("\n\n"):
        if block.startswith(("latency", "cpus", "counters")):
            keep.append(block.strip("\n"))
    f["remote_excerpt"] = "\n\n".join(keep)

    # 4
    pub = bon["published"]
    lo, hi = min(v["pair"] for v in pub.values()), max(v["pair"] for v in pub.values())
    rows = ["| loop | slab, UP build | kmem_map, UP build | slab, SMP build | kmem_map, SMP build |",
            "|---|---|---|---|---|"]
    for w in ("tty", "prodcons"):
        cells = []
        for build in ("auto", "smp"):
            for b in BACKENDS:
                x = bon[w, b, build]
                cells.append(f"{x['cpo']:.0f} / {x['pair']:.0f} ({x['pair_us']:.1f} µs)")
                check(lo / 10 <= x["pair"] <= hi * 10, f"{w} {b} {build}: within an order of magnitude of Bonwick")
        rows.append(f"| {w} | " + " | ".join(cells) + " |")
        a, b = bon[w, "slab", "auto"]["pair"], bon[w, "kmem_map", "auto"]["pair"]
        check(max(a, b) / min(a, b) <= 2, f"{w}, UP build: the two backends within 2x")
        a, b = bon[w, "slab", "smp"]["pair"], bon[w, "kmem_map", "smp"]["pair"]
        check(b / a > 2, f"{w}, SMP build: kmem_map's lock puts it more than 2x above the slab")
    f["bonwick_table"] = "\n".join(rows)
    f["bonwick_pub"] = "\n".join(["| Bonwick 1994, alloc+free pair | µs | cycles at 40 MHz |", "|---|---|---|"] +
                                 [f"| {k} | {v['us']} | {v['pair']:.0f} |" for k, v in pub.items()])
    f["b_slab_up"] = f"{bon['tty', 'slab', 'auto']['pair']:.0f}"
    f["b_kmem_up"] = f"{bon['tty', 'kmem_map', 'auto']['pair']:.0f}"
    f["b_kmem_smp"] = f"{bon['tty', 'kmem_map', 'smp']['pair']:.0f}"
    f["b_kmem_smp_us"] = f"{bon['tty', 'kmem_map', 'smp']['pair_us']:.1f}"
    nolock = pub["slab kmem_cache_alloc"]["pair"] - 2 * BONWICK_MUTEX_US * BONWICK_MHZ
    f["b_nolock"] = f"{nolock:.0f}"
    check(0.5 < bon["tty", "slab", "auto"]["pair"] / nolock < 2, "kalloc's slab pair is within 2x of Bonwick's less his mutexes")
    f["b_up_ratio"] = f"{bon['tty', 'kmem_map', 'auto']['pair'] / bon['tty', 'slab', 'auto']['pair']:.2f}"
    f["b_smp_ratio"] = f"{bon['tty', 'kmem_map', 'smp']['pair'] / bon['tty', 'slab', 'smp']['pair']:.2f}"
    check(bon["tty", "slab", "auto"]["pair"] < lo, "kalloc's slab pair is below every Bonwick figure (no mutex)")
    check(lo <= bon["tty", "kmem_map", "smp"]["pair"] <= hi * 1.25,
          "kmem_map with its lock lands near Bonwick's 4.4BSD figure")
    p94 = _costs.PRESETS["1994"]
    f["lock_1994"], f["miss_1994"], f["op_1994"] = p94.lock_uncontended, p94.cache_miss, p94.op_base

    # fragmentation
    rows = ["| workload (1 CPU) | slab `overhead_ratio` | kmem_map `overhead_ratio` | slab `mean_overhead_ratio` | kmem_map `mean_overhead_ratio` |",
            "|---|---|---|---|---|"]
    for w in ("fs", "larson"):
        s, k = frag[w, "slab"], frag[w, "kmem_map"]
        rows.append(f"| {w} | {s['ratio']:.2f} | {k['ratio']:.2f} | {s['mean']:.2f} | {k['mean']:.2f} |")
        check(s["ratio"] > k["ratio"], f"{w}: the slab's overhead is above kmem_map's, the reverse of Bonwick")
        check(1.2 < k["ratio"] < 1.7, f"{w}: kmem_map's overhead is near Bonwick's 45 % for 4.4BSD")
    f["frag_table"] = "\n".join(rows)
    f["frag_req"] = ", ".join(f"{w} {kib(frag[w, 'kmem_map']['requested'])}" for w in ("fs", "larson")) + \
        " live at kmem_map's peak"
    f["frag_classes"] = ", ".join(f"{w} {frag[w, 'slab']['classes']}" for w in ("fs", "larson"))

    (DOCS / "reproductions.md").write_text(TEMPLATE.format(**f))


TEMPLATE = """# Reproductions: published allocator results beside kalloc's

Produced by `python docs/make_reproductions.py` (about 15 s) from the code as it is: every kalloc
figure below is filled in by that script, and every sentence saying who wins or how far apart two
figures are is checked against them before the page is written. The published figures are those
collected in [research/costs.md](research/costs.md) ("Published allocator results to reproduce in
shape") and the slab commit's announcement (`seed/dragonfly-slab-allocator-announcement.txt`).
What is reproduced is the **shape** (who wins, the order of magnitude), not the number:
tests/test_reproductions.py checks those shapes on smaller runs. Machine: i386, 64 MiB, the 2003
cost model unless a section says otherwise; the workloads' default parameters and warm-ups
([workloads.md](workloads.md)); seed 0.

## 1. McKusick & Karels 1988: the 4.3BSD/4.4BSD kernel malloc

### (a) The allocator's share of kernel time

Published (share/doc/papers/kernmalloc): with the fast-path macro forced to call the allocator,
"the memory allocator accounted for six percent of the time spent in the kernel"; factoring out
the statistics and the call overhead, "the allocator would account for at most four percent of
time in the kernel".

kalloc, `sim.allocator_share` (allocator operations and their IPI handlers over busy cycles) of
the driver workloads at 1 CPU:

{share_table}

All between {share_min} and {share_max}: below M&K's four percent on both backends, the slab's
share at most kmem_map's on every workload (at 1 CPU its fast path is a critical section, kmem_map's
an `splhigh`/`splx`), and {share_top} the largest, because its CCBs are M_ZERO and the bzero is the
allocator's.

What is comparable: both are the allocator's time over the kernel's busy time. kalloc's busy time
is the allocator plus the workloads' `work`, and that work is calibrated from the bundled traces'
gaps of at most 100 µs between allocator events, which docs/calibration.py takes as time busy in
the kernel; so the denominator is meant as kernel time, as in M&K. What is not: M&K profiled a
whole 4.3BSD timesharing VAX (every kernel path, the macro's inline cost spread over its callers);
kalloc's denominator is only what its driver models do between allocator calls, with Linux 2-CPU
traces standing in for the driver's rate (perf gives microseconds, so gaps are multiples of 2,000
cycles), and the allocator's price is the 2003 cost model's (`op_base` 40 cycles of allocator
instructions, which M&K counted as "nine and sixteen (simple) VAX instructions"). The agreement is
of order (a few percent), not of figure.

### (b) Bucket memory is never given back after a phase change

Published: in M&K's design a page once split into a bucket's chunks stays in that bucket; FreeBSD
4.8's kmem_map keeps the rule (`couldfree` is counted, never acted on: docs/research/kmem_map.md).
The DragonFly 2003 slab gives a wholly free zone back to the VM once the CPU already keeps
`zone_cache` (2) free zones and the zone is not the last of its size on ZoneAry; page-multiple
requests (4096 bytes) take their own pages and return them on free.

kalloc, workload `phases` (plugins/kalloc_plugins/workloads/phases.py): four phases of 64, 256,
1024 and 4096 bytes, 1,000 objects each per CPU, all allocated then all freed before the next phase;
memory kept = `end_footprint_bytes - boot_footprint_bytes`, once nothing is live:

{phases_table}

After the last free kmem_map still holds what each bucket held at its peak, about 1,000 x (64 + 256
+ 1024 + 4096) = {ph_kmem_sum} bytes per CPU rounded to pages: none of it is live. The slab at 1 CPU
keeps {ph_slab_zones} zones of 32 KiB: the last zone of each of the three zone-backed sizes, which
stays on ZoneAry, and the `zone_cache` of 2 free zones; every other zone went back to the VM, and
the 4096-byte phase's pages went back one by one. kmem_map keeps x{ph_ratio1} the slab's memory.
What differs from M&K: their 1988 kernel had no second allocator to compare with; kalloc's figure is
FreeBSD 4.8's code, which did not change the rule.

## 2. DragonFly 2010: the passive remote free

Published (DragonFly 5fee07e60d, 2010-09-18): the lock-free remote-free list plus the passive IPI
"reduces the IPI messaging load by a factor of 100x or more. kfree() sends virtually no IPIs any
more". The 2003 code sends one hardware IPI per cross-CPU free.

kalloc, slab with `remote_free="ipi"` (2003) against `remote_free="passive"` (2010): messages =
`counters.ipis + counters.passive_ipis`, against `counters.remote_frees`:

{passive_table}

The 2003 mode sends exactly one IPI per remote free. The passive mode sends no hardware IPI from
free at all, and x{fac_min} to x{fac_max} fewer messages: **kalloc reaches the 100x**. Why: a
passive message goes only when the owner has flagged the zone (`z_RSignal`, set as the zone runs out
and leaves ZoneAry) and its RChunks list goes from empty to non-empty; every other remote free is a
compare-and-swap onto RChunks and nothing else, and when the owner's zone runs out while remote
chunks are already waiting it takes them back itself, with no message. So the messages are set by
how often an owner exhausts a zone with nothing waiting, not by the number of frees; with the
consumers' frees arriving in a steady stream (prodcons' batches, net's protocol threads) that is
rare, and a zone holds many chunks ({pc_nmax_lo} of 512 bytes to {pc_nmax_hi} of 32 bytes at 32
KiB), so exhaustions are rare too. Large chunks would give a smaller factor (the 16384-byte zone
holds one chunk at 32K). What
differs from DragonFly's: their figure is a whole system's IPI load (other IPI users included);
kalloc counts only the allocator's messages, on workloads whose every free (prodcons) or most (net)
is remote.

## 3. The slab commit's announcement, claim by claim

### "approximately 80 zones based on their size. Each zone has a chunk size"

`{zones_cmd}` gives 72 zones, each with its chunk size; grouped by band (condensed from its
`classes`):

{bands_table}

The 80 of the announcement is the case of a 32 KiB zone limit (one more band, 16384-32767 by 2048,
8 more zones); the code as committed has ZoneLimit 16384, so 72 (docs/research/slab.md section 1.1).
The bands meet at their edges (a 128-byte request is in the second band and rounds to the
first band's last chunk, 128): each zone is counted once, in the band where its chunk size is
the top, 16 + 7 x 8 = 72. `{table_cmd}` (excerpt):

```
{zones_excerpt}
```

### "ZoneSize, which is calculated at boot time to be between 32K and 128K"

{zonesize_table}

Between 32K and 128K, about 1/1024 of RAM: 64 MiB and less give 32K, 128 MiB exactly gives 64K (the
source comment says 128K; the comparison is strict), more gives 128K.

### "small power-of-2 allocations are aligned to their size"

Three allocations of each power of two, 1 CPU (`kalloc.boot(backend=...)`, `k.malloc(size, ...)`):

{align_table}

The slab aligns every power of two from 8 to 2048 to its size (a power-of-two zone starts its chunks
at an offset rounded to the chunk size, and zones are ZoneSize-aligned). 4096 and 8192, page
multiples, and 16384 (the zone limit) take the large path and get whole pages, page-aligned, as in
1.1: so 4096 is aligned to its size, 8192 and 16384 are not. A "small" power of two is one below a
page (docs/research/slab.md section 1.4); kern_tty.c's 128-byte cblocks are well inside. kmem_map's buckets are
power-of-two chunks carved from page-aligned pages, so its powers of two up to 8192 are aligned.

### "malloc(0) requests are also allowed and return a non-NULL result"

`k.malloc(0, ...)` on the slab returns {zero_slab}, `ZERO_LENGTH_PTR` (the pointer value -8): no
memory, usable size 0, and free() of it returns at once. kmem_map returns {zero_kmem}, a real
{zero_kmem_usable}-byte chunk of the smallest bucket (4.8 rounds 0 up to MINBUCKET).

### "The cpu that allocates a zone block owns it ... forwards the request ... through an asynchronous IPI"

Python API, 2 CPUs: a 100-byte malloc on CPU 0 ({own_va}) lands in a zone owned by CPU 0; its free on
CPU 1 counts one `remote_frees` and one IPI. Over a run, `{remote_cmd}`: {remote_frees} remote frees,
{remote_ipis} IPIs ({remote_intr} interrupts on the owner: one drain takes every queued message, and
an IPI latched during a drain costs one more), every handler on CPU 0 ({h0} cycles), none on CPU 1.
Asynchronous: the free on CPU 1 takes {free_mean} cycles on average (the IPI send and the free's own
instructions), less than the 2,500 cycles before the owner's handler even starts; the freeing CPU
never waits for it. From `{remote_table_cmd}`:

```
{remote_excerpt}
```

## 4. Bonwick 1994: an alloc+free pair on a SPARCstation-2

Published (Bonwick, USENIX Summer 1994, section 5): "bucket and slab are within 25 % of each other",
about 2x the bare lock cost (a `mutex_enter/exit` pair is 1.0 µs, two of them per pair):

{bonwick_pub}

kalloc, cost preset `"1994"` (`kalloc.costs.PRESETS["1994"]`), cycles per allocator operation / per alloc+free
pair (2 operations) and the pair in µs at 40 MHz, same-CPU loops at 1 CPU after each workload's
warm-up (`tty`: cblocks allocated and freed on their CPU; `prodcons` at 1 CPU: one CPU allocates a
batch and frees it). "UP build" is `kernel_build=auto` on 1 CPU (no SMP lock); "SMP build" is
`kernel_build=smp`, the SMP kernel's locks on one CPU, which is what Solaris 2.4 always ran:

{bonwick_table}

Every figure is within an order of magnitude of Bonwick's 152-188 cycles. In the UP build the two
backends are within 2x of each other (kmem_map x{b_up_ratio} the slab on `tty`), not quite within
Bonwick's 25 %; in the SMP build kmem_map pays its lock and is x{b_smp_ratio} the slab, beyond 2x,
because only one of the two takes a lock. kmem_map with its lock ({b_kmem_smp} cycles, {b_kmem_smp_us} µs) lands
near Bonwick's 4.4BSD figure (164 cycles, 4.1 µs); without it ({b_kmem_up} cycles) it is an `spl`
pair and the bucket pop. The slab ({b_slab_up} cycles) is below every Bonwick figure, and the reason
is the design, not the prices: kalloc's slab is DragonFly's per-CPU 2003 allocator, whose fast path
takes no lock at all, only a critical section, so it has no 2.0 µs mutex floor, while Bonwick's
1994 slab took the cache's mutex on every allocation and free: his 152 cycles less two mutex
pairs (80 cycles) leave {b_nolock}, of the order of kalloc's {b_slab_up}. (The per-CPU magazines that
took the lock off Solaris's fast path came in 2001.) The bucket side is closer: Bonwick's 4.4BSD `kmem_alloc` is the M&K allocator, of
which FreeBSD 4.8's kmem_map is a close descendant. What else differs: SPARC against i386 instruction
counts (kalloc prices the allocator's own instructions as `op_base` {op_1994} cycles on both), and a
measured loop against a priced model.

The preset (`kalloc.costs.PRESETS["1994"]`, sourced in [cost-model.md](cost-model.md)): `clock_hz`
40 MHz, a lock pair `lock_uncontended` = {lock_1994} cycles (Bonwick's 1.0 µs mutex pair at 40 MHz), a
memory latency `cache_miss` of {miss_1994} cycles, the allocator's own path `op_base` {op_1994} cycles.
None of it was tuned to Bonwick's figures.

### Bonwick's fragmentation figures

Published: total fragmentation after the kenbus step (16 MB SPARCstation-1) 14 % for the slab,
45 % for 4.4BSD (a week of desktop use: 9 % and 38 %). kalloc's `memory.overhead_ratio` (grown
memory over the live requested bytes at the footprint's peak; 1.45 is 45 %) and
`mean_overhead_ratio` (over time), fresh runs at 1 CPU with the default parameters:

{frag_table}

kmem_map's figure is close to Bonwick's 45 % for 4.4BSD: the same power-of-two rounding (up to half
of each chunk) and one-page refills. The slab's is the reverse of his: higher than kmem_map's,
where Bonwick's slab is the lowest. The reason is zone size: Bonwick's slabs for small objects are
one page, so a partly used slab wastes at most a page, while a DragonFly 2003 zone is ZoneSize (32
KiB at 64 MiB) per size class per CPU, with 72 classes (fine-grained: 8 to 1024 bytes by steps of 8
to 64), so each class in use holds up to 32 KiB beyond its live chunks, plus the two cached free
zones. The fine size classes (little rounding waste) do not make up for that on live sets as small
as these ({frag_req}), with one partly filled 32 KiB zone or more per size class in use ({frag_classes}
classes), where kenbus
measured a whole kernel heap on a 16 MB machine, in which one-page slabs waste little. The
mean over time is no kinder to the slab: these runs are short, and the zones filled in the warm-up
stay.
"""

if __name__ == "__main__":
    main()
