"""Snapshot the running kernel's SLUB geometry into tests/reference/slub_<series>.json.

Run as root on a Linux machine (the reference in this directory came from the 2-CPU
Linux 6.18.44 machine that ran kalloc's development, the series that recorded
tests/traces/)::

    python tests/reference/make_slub_snapshot.py [out.json]

It records ``uname -r``, the CPU counts (present and possible: calculate_order's
slub_min_objects uses num_present_cpus(), nr_cpu_ids when that is 1), the page size, the
date, the kernel command line (slub_* parameters change the geometry), /proc/slabinfo as
text and, for every entry of /sys/kernel/slab, the attributes below that exist, and
whether the entry is a symlink (a merged cache's alias) and to what.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys

ATTRS = ("object_size", "slab_size", "align", "objs_per_slab", "order", "cpu_partial", "min_partial",
         "ctor", "destroy_by_rcu", "hwcache_align", "reclaim_account", "sheaf_capacity", "aliases",
         "cache_dma", "poison", "red_zone", "store_user", "sanity_checks", "trace", "usersize")
SYS = "/sys/kernel/slab"


def _read(path: str):
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    head = text.split()[0] if text else ""
    return int(head) if head.lstrip("-").isdigit() and " " not in text else text


def snapshot() -> dict:
    caches = {}
    for name in sorted(os.listdir(SYS)):
        path = os.path.join(SYS, name)
        row = {a: v for a in ATTRS if (v := _read(os.path.join(path, a))) is not None}
        if os.path.islink(path):
            row["alias_of"] = os.path.basename(os.readlink(path))
        caches[name] = row
    with open("/proc/slabinfo") as fh:
        slabinfo = fh.read()
    with open("/proc/cmdline") as fh:
        cmdline = fh.read().strip()
    def cpus(what):
        with open(f"/sys/devices/system/cpu/{what}") as fh:
            spec = fh.read().strip()
        n = 0
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n
    return {"uname_r": platform.release(), "machine": platform.machine(),
            "present_cpus": cpus("present"), "possible_cpus": cpus("possible"),
            "online_cpus": cpus("online"), "page_size": os.sysconf("SC_PAGE_SIZE"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "cmdline": cmdline, "source": "this script, /proc/slabinfo and /sys/kernel/slab",
            "caches": caches, "slabinfo": slabinfo}


if __name__ == "__main__":
    snap = snapshot()
    series = ".".join(snap["uname_r"].split(".")[:2])
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), f"slub_{series}.json")
    with open(out, "w") as fh:
        json.dump(snap, fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"{out}: {len(snap['caches'])} caches, {snap['uname_r']}, {snap['present_cpus']} CPUs")
