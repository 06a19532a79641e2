"""The ``kalloc`` command line: argparse in front of config, harness and export.

Every command takes the machine options (--backend/--backends, --ncpus, --physmem,
--seed, --arch, --set key=value, --format) and --config FILE; the command line wins
over the file.  Bad input -- unknown backend, workload or option, bad TOML, a bad size
-- is one line on stderr and exit status 2, never a traceback, and it comes before any
work: every input (the trace of ``compare --trace`` included) and output is checked
first.  What is printed is escaped: a control character in a message or in a name from a
trace (a newline, a terminal escape sequence) is shown as ``\\n`` or ``\\x1b``.
"""

from __future__ import annotations

import argparse
import os
import sys

from kalloc import plugins
from kalloc.backends.base import COMMON_OPTIONS, resolve_options
from kalloc.config import FORMATS, build, load_toml, parse_assignments
from kalloc.errors import KallocError, KernelPanic
from kalloc import plot
from kalloc.export import compare_table, render, run_report, run_reports, scale_rows, scale_table, to_table
from kalloc.executors import run_grid
from kalloc.harness import RunSpec, run_one, specs_for, summarize
from kalloc.replay.run import check_trace, replay_backends


class UsageError(Exception):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _machine_args(p: argparse.ArgumentParser, many: bool, records: bool = True,
                  cpu_lists: bool | None = None) -> None:
    """The machine options; ``records``: the command makes run records (--plot, --timing);
    ``cpu_lists``: --ncpus takes a list (default: as --backends does)."""
    g = p.add_argument_group("machine and backend")
    g.add_argument("--config", metavar="FILE", help="TOML file with any of these options")
    g.add_argument("--backend", help="backend name (see `kalloc backends`)")
    if many:
        g.add_argument("--backends", help="comma-separated backends, first is the reference")
    lists = many if cpu_lists is None else cpu_lists
    g.add_argument("--ncpus", help="simulated CPUs" + (" (comma-separated list)" if lists else ""))
    g.add_argument("--physmem", help="physical memory, bytes or 16M/4G (default 64M)")
    g.add_argument("--seed", help="random seed (default 0)")
    g.add_argument("--arch", help="i386 (default) or amd64")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", dest="sets",
                   help="backend option, e.g. zone_cache=32 or slab.remote_free=passive")
    g.add_argument("--format", help="table (default), json or csv")
    g.add_argument("--output", metavar="FILE", help="write the output to FILE instead of stdout")
    if not records:
        return
    g.add_argument("--plot", metavar="PNG", help="also draw a plot (needs matplotlib: kalloc[plot])")
    g.add_argument("--timing", action="store_true",
                   help="fill wall_seconds in JSON/CSV (left null by default, so that the same "
                        "configuration and seed give byte-identical output)")


def _workload_args(p: argparse.ArgumentParser, many: bool) -> None:
    g = p.add_argument_group("workloads and the cost model")
    g.add_argument("--workload", help="workload name (see `kalloc workloads`)")
    if many:
        g.add_argument("--workloads", help="comma-separated workloads")
        g.add_argument("--repeat", help="runs per cell, with seeds seed, seed+1, ...")
        g.add_argument("--jobs", help="parallel processes (results identical to --jobs 1)")
        g.add_argument("--executor", help="local (default) or dask (kalloc[dask])")
        g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786 "
                       "(default: a local cluster of --jobs workers)")
    g.add_argument("--param", action="append", metavar="KEY=VALUE", dest="params",
                   help="workload parameter, e.g. packets=500 or net.packets=500")
    g.add_argument("--cost", action="append", metavar="NAME=CYCLES", dest="costs",
                   help="override a price of the cost model (docs/cost-model.md)")
    _warmup_arg(g, "(default: each workload's own, see `kalloc workloads`)")


def _warmup_arg(g, default: str) -> None:
    g.add_argument("--warmup", metavar="N", help="allocator operations (malloc, free, realloc) run before "
                                                 f"measuring starts {default}")


def _sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", metavar="KEY", help="a dotted key of the record (default "
                   "sim.throughput_ops_per_mcycle; e.g. latency.malloc.p99, memory.peak_growth_bytes)")


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kalloc", description="Simulate kernel memory allocators and compare them.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, helptext in (("backends", "list the allocator backends"),
                           ("workloads", "list the driver workloads")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--config", metavar="FILE")
        s.add_argument("--format", help="table (default), json or csv")
    s = sub.add_parser("info", help="boot a backend and print its machine and size classes")
    _machine_args(s, many=False, records=False)
    s = sub.add_parser("run", help="one workload on one backend, full report")
    _machine_args(s, many=False)
    _workload_args(s, many=False)
    s = sub.add_parser("compare", help="workloads x backends x CPU counts, side by side")
    _machine_args(s, many=True)
    _workload_args(s, many=True)
    s.add_argument("--trace", metavar="FILE", help="also replay this kernel allocation trace as a workload")
    s = sub.add_parser("scale", help="throughput and lock-wait curves over CPU counts")
    _machine_args(s, many=True)
    _workload_args(s, many=True)
    s = sub.add_parser("sweep", help="vary prices, options, parameters or CPUs over a grid: ratios, crossovers")
    _machine_args(s, many=True, cpu_lists=False)
    _workload_args(s, many=True)
    _sweep_args(s)
    s.add_argument("--vary", action="append", metavar="KEY=SPEC",
                   help="cost.PRICE, BACKEND.OPTION, OPTION, WORKLOAD.PARAM, param.PARAM or ncpus, over a,b,c or "
                        "lo:hi:n (repeat for a product)")
    s.add_argument("--ratio", metavar="A/B", help="the ratio of the metric of backend A to B's, and where it crosses 1")
    s = sub.add_parser("sensitivity", help="one price at a time across kalloc.costs.RANGES: a tornado of A/B")
    _machine_args(s, many=True, cpu_lists=False)
    _workload_args(s, many=True)
    _sweep_args(s)
    s = sub.add_parser("replay", help="replay a Linux kmem trace (perf script, ftrace or trace-cmd report text) on backends")
    s.add_argument("trace", metavar="TRACE", help="trace file (.gz/.xz/.zst or plain), or - for stdin")
    _machine_args(s, many=True, cpu_lists=False)
    s.add_argument("--cost", action="append", metavar="NAME=CYCLES", dest="costs",
                   help="override a price of the cost model (docs/cost-model.md)")
    _warmup_arg(s, "(default 0)")
    s.add_argument("--no-pipeline", action="store_true",
                   help="parse the trace in this process (default: in a second process, overlapping "
                        "the simulation, when the machine has two CPUs or more; same results)")
    s = sub.add_parser("scenario", help="a built-in experiment; isa-dma: the 2003 slab ISA bounce-buffer regression")
    s.add_argument("name", choices=("isa-dma",), help="isa-dma: docs/isa-dma.md")
    s.add_argument("--physmem", default="256M", help="physical memory (default 256M)")
    s.add_argument("--ncpus", type=int, default=2, help="simulated CPUs (default 2)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--channel", type=int, default=5, help="the late driver's DMA channel: 0, 1, 3 or 5-7 (default 5)")
    s.add_argument("--bounce", default="64K", help="its bounce buffer (default 64K)")
    s.add_argument("--kernel-image", dest="kernel_image", default="4608K",
                   help="what the loader and locore leave at 1 MiB (default 4608K)")
    s.add_argument("--scale", type=float, default=1.0, help="multiplier of the boot load's /etc/rc work (default 1.0)")
    s.add_argument("--format", default="table", help="table (default), json or csv")
    s.add_argument("--output", metavar="FILE", help="write the output to FILE instead of stdout")
    return p


def _file(args) -> dict:
    """The --config file's settings (an empty name is a missing file, not no file)."""
    path = getattr(args, "config", None)
    return {} if path is None else load_toml(path)


def _config(args, default_ncpus=(1,), single=()):
    file = _file(args)
    cli = {k: getattr(args, k, None) for k in
           ("backend", "backends", "workload", "workloads", "ncpus", "physmem", "seed", "arch",
            "format", "output", "repeat", "jobs", "plot", "executor", "scheduler", "trace", "warmup")}
    cli["options"] = parse_assignments(getattr(args, "sets", None), "--set")
    cli["params"] = parse_assignments(getattr(args, "params", None), "--param")
    cli["costs"] = parse_assignments(getattr(args, "costs", None), "--cost")
    cfg = build(file, cli, default_ncpus, single)
    for path in (cfg.output, cfg.plot):
        _check_writable(path)
    if cfg.plot:
        plot.require()
    if cfg.trace:
        check_trace(cfg.trace)
    args.output = cfg.output        # the config file's `output = ...` too, for _emit
    return cfg


def _check_writable(path: str | None) -> None:
    """Refuse an output or plot file that cannot be written before anything runs: a long
    comparison must not be lost to a typo in a directory name."""
    if not path:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory")
    if not os.path.isdir(parent):
        raise ValueError(f"{path}: no such directory {parent}")
    if not os.access(path if os.path.exists(path) else parent, os.W_OK):
        raise ValueError(f"{path}: not writable")


def _untimed(args, records: list) -> list:
    """wall_seconds is the one field that is not a function of the configuration: null it
    unless --timing asks for it."""
    if not getattr(args, "timing", False):
        for r in records:
            r["wall_seconds"] = None
    return records


# Control characters as escapes: C0 but newline (tab included), DEL and C1.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x0A}
_ESCAPES_ONE_LINE = {**_ESCAPES, 0x0A: "\\n"}


def escaped(text: str, one_line: bool = False) -> str:
    """``text`` safe for a terminal: a name from a trace cannot move the cursor, set the
    window title or clear the screen, and a message stays on one line (``one_line``)."""
    return text.translate(_ESCAPES_ONE_LINE if one_line else _ESCAPES)


def _emit(text: str, output: str | None) -> None:
    text = escaped(text)
    if output:
        with open(output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def cmd_list(args, which: str) -> str:
    fmt = args.format if args.format is not None else _file(args).get("format", "table")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    table = plugins.backends() if which == "backends" else plugins.workloads()
    rows = []
    for name, (cls, origin) in table.items():
        row = {"name": name, "description": cls.DESCRIPTION, "origin": origin}
        extra = getattr(cls, "OPTIONS" if which == "backends" else "PARAMS", {})
        row["options" if which == "backends" else "params"] = (
            {k: o.default for k, o in extra.items()} if which == "backends" else dict(extra))
        if which == "backends":   # every option it takes, common ones included, at its own defaults
            defaults = resolve_options(cls, {})
            row["option_info"] = {k: {**o.describe(), "default": defaults[k]}
                                  for k, o in {**COMMON_OPTIONS, **extra}.items()}
        rows.append(row)
    return render(rows, fmt, lambda rs: to_table([{k: r[k] for k in ("name", "description", "origin")} for r in rs]))


def _spec(cfg, backend: str, workload: str, ncpus: int, seed: int) -> RunSpec:
    return RunSpec(backend, workload, ncpus, seed, cfg.physmem, cfg.arch, cfg.options_for(backend),
                   cfg.params_for(workload), cfg.costs, cfg.warmup)


def cmd_info(args) -> str:
    from kalloc.malloc import boot
    cfg = _config(args, single=("backends", "ncpus"))
    b = cfg.backends[0]
    k = boot(b, ncpus=cfg.ncpus[0], physmem=cfg.physmem, seed=cfg.seed, arch=cfg.arch, **cfg.options_for(b))
    st = k.stats()
    if cfg.format != "table":
        return render([st], cfg.format, None)
    m = k.machine
    head = (f"backend {b}: {k.backend.DESCRIPTION}\n"
            f"machine: {m.ncpus} CPU(s), {m.physmem >> 20} MiB, {m.arch.name}, page {m.arch.page_size}, "
            f"{m.free_count} free pages, options {st['options']}\n\n")
    tables = k.backend.info_tables() if hasattr(k.backend, "info_tables") else [("size classes", st["classes"])]
    # a table is rows, or text a kernel prints itself (slub's /proc/slabinfo)
    return head + "\n".join(f"{title}\n{rows if isinstance(rows, str) else to_table(rows)}" for title, rows in tables)


def cmd_run(args) -> str:
    cfg = _config(args, single=("backends", "workloads", "ncpus"))
    rec = _untimed(args, [run_one(_spec(cfg, cfg.backends[0], cfg.workloads[0], cfg.ncpus[0], cfg.seed))])[0]
    if cfg.plot:
        plot.plot_series([rec], cfg.plot)
    return render([rec], cfg.format, lambda rs: run_report(rs[0]))


def _grid(cfg, ncpus) -> list:
    seeds = [cfg.seed + i for i in range(cfg.repeat)]
    specs = [_spec(cfg, s.backend, s.workload, s.ncpus, s.seed)
             for s in specs_for(cfg.backends, cfg.workloads, ncpus, seeds)]
    return run_grid(specs, cfg.jobs, _progress(len(specs)), cfg.executor, cfg.scheduler)


def _replays(cfg, path: str, ncpus: int | None, pipeline: bool | None = None) -> list:
    """The trace replayed on every configured backend, in one pass (records like the harness's)."""
    bar = _progress_lines()
    try:
        return replay_backends(path, [(b, cfg.options_for(b)) for b in cfg.backends], ncpus, cfg.physmem,
                               cfg.arch, cfg.costs, cfg.seed, bar, pipeline, cfg.warmup or 0)
    finally:
        if bar:
            sys.stderr.write("\n")           # end the progress line


def cmd_replay(args) -> str:
    cfg = _config(args)
    check_trace(args.trace)
    explicit = args.ncpus is not None or "ncpus" in _file(args)
    if explicit and len(cfg.ncpus) > 1:
        raise ValueError(f"replay takes one --ncpus (the trace's CPUs fold onto it), not {len(cfg.ncpus)}")
    records = _untimed(args, _replays(cfg, args.trace, cfg.ncpus[0] if explicit else None,
                                      False if args.no_pipeline else None))
    if cfg.plot:
        plot.plot_series(records, cfg.plot)
    return render(records, cfg.format, run_reports)


def cmd_compare(args) -> str:
    cfg = _config(args, (1, 2, 4))
    # The trace first: a missing or damaged one must not cost the grid's results.
    replays = _replays(cfg, cfg.trace, None) if cfg.trace else []
    records = _untimed(args, _grid(cfg, cfg.ncpus) + replays)
    if cfg.plot:
        plot.plot_compare(summarize(records), cfg.plot)
    return render(records, cfg.format, compare_table)


def cmd_scale(args) -> str:
    cfg = _config(args, (1, 2, 4, 8))
    rows = scale_rows(summarize(_grid(cfg, cfg.ncpus)))
    if cfg.plot:
        plot.plot_scale(rows, cfg.plot)
    return render(rows, cfg.format, scale_table)


def cmd_sweep(args) -> str:
    from kalloc.sweep import sweep_command
    return sweep_command(args, _config(args, (2,), single=("ncpus",)), _progress)


def cmd_sensitivity(args) -> str:
    from kalloc.sweep import sensitivity_command
    return sensitivity_command(args, _config(args, (2,), single=("workloads", "ncpus")), _progress)


def _progress_lines():
    """Progress of a long trace on stderr (operations read), when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def tick(n):
        sys.stderr.write(f"\r{n:,} operations")
        sys.stderr.flush()
    return tick


def _progress(total: int):
    """A progress bar on stderr when it is a terminal (and only then)."""
    if not sys.stderr.isatty():
        return None
    done = [0]

    def tick():
        done[0] += 1
        sys.stderr.write(f"\r{done[0]}/{total} runs")
        if done[0] == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return tick


def cmd_scenario(args) -> str:
    from kalloc.dma.scenario import format_table, isa_dma_scenario
    if args.format not in FORMATS:
        raise ValueError(f"unknown format {args.format!r} (known: {', '.join(FORMATS)})")
    if args.seed < 0:                       # as every other command's --seed
        raise ValueError(f"seed must be at least 0, got {args.seed}")
    rows = isa_dma_scenario(physmem=args.physmem, ncpus=args.ncpus, seed=args.seed, channel=args.channel,
                            bounce=args.bounce, kernel_image=args.kernel_image, scale=args.scale)
    return render(rows, args.format, lambda rs: format_table(rs) + "\n")


COMMANDS = {
    "backends": lambda a: cmd_list(a, "backends"),
    "workloads": lambda a: cmd_list(a, "workloads"),
    "info": cmd_info,
    "run": cmd_run,
    "compare": cmd_compare,
    "scale": cmd_scale,
    "replay": cmd_replay,
    "sweep": cmd_sweep,
    "sensitivity": cmd_sensitivity,
    "scenario": cmd_scenario,
}


def main(argv=None) -> int:
    try:
        args = make_parser().parse_args(argv)
        _check_writable(getattr(args, "output", None))
        text = COMMANDS[args.command](args)
        _emit(text, getattr(args, "output", None))
        return 0
    except (UsageError, ValueError, TypeError, OSError, EOFError, KallocError) as e:
        what = "simulated kernel panic: " if isinstance(e, KernelPanic) else ""
        sys.stderr.write(f"kalloc: {what}{escaped(str(e), one_line=True)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("kalloc: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
