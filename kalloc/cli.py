"""The ``kalloc`` command line: argparse in front of config, harness and export.

Every command takes the machine options (--backend/--backends, --ncpus, --physmem,
--seed, --arch, --set key=value, --format) and --config FILE; the command line wins
over the file.  Bad input -- unknown backend, workload or option, bad TOML, a bad size
-- is one line on stderr and exit status 2, never a traceback, and it comes before any
work: every input (the trace of ``compare --trace`` included), output and the runs
database of ``--save`` is checked first.  A command's runs are kalloc.experiment's (the
notebook API's), what it prints of them kalloc.export.present's, which ``kalloc show``
uses for a saved run (kalloc.runsdb).  What is printed is escaped: a control character in a message or in a name from a
trace (a newline, a terminal escape sequence) is shown as ``\\n`` or ``\\x1b``.
"""

from __future__ import annotations

import argparse
import os
import sys

from kalloc import experiment, plugins, runsdb
from kalloc.backends.base import COMMON_OPTIONS, resolve_options
from kalloc.config import FORMATS, build, load_toml, parse_assignments
from kalloc.errors import KallocError, KernelPanic
from kalloc import plot
from kalloc.export import present, render, scale_rows, to_table
from kalloc.harness import summarize
from kalloc.replay.run import check_trace


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


def _db_arg(g) -> None:
    g.add_argument("--db", metavar="PATH", help="the saved runs' database (default $KALLOC_DB, else "
                                                "$XDG_DATA_HOME/kalloc/runs.db)")


def _save_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("saved runs")
    g.add_argument("--save", nargs="?", const="", metavar="NAME",
                   help="store the records, their provenance and this command line (default name: COMMAND-N); "
                        "see `kalloc runs`")
    _db_arg(g)


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
    _save_args(s)
    s = sub.add_parser("compare", help="workloads x backends x CPU counts, side by side")
    _machine_args(s, many=True)
    _workload_args(s, many=True)
    _save_args(s)
    s.add_argument("--trace", metavar="FILE", help="also replay this kernel allocation trace as a workload")
    s = sub.add_parser("scale", help="throughput and lock-wait curves over CPU counts")
    _machine_args(s, many=True)
    _workload_args(s, many=True)
    _save_args(s)
    s = sub.add_parser("sweep", help="vary prices, options, parameters or CPUs over a grid: ratios, crossovers")
    _machine_args(s, many=True, cpu_lists=False)
    _workload_args(s, many=True)
    _save_args(s)
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
    _save_args(s)
    _saved_run_parsers(sub)
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


def _saved_run_parsers(sub) -> None:
    """The commands on saved runs and on JSON files of records."""
    s = sub.add_parser("runs", help="list the saved runs (--save), or delete one")
    s.add_argument("--delete", metavar="NAME", help="delete the saved run NAME")
    s.add_argument("--format", default="table", help="table (default), json or csv")
    _db_arg(s)
    for name, helptext in (("show", "print a saved run as the command that made it did"),
                           ("export", "a saved run's records as JSON (default) or CSV")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("name", metavar="NAME")
        s.add_argument("--format", default="table" if name == "show" else "json",
                       help="table (default), json or csv" if name == "show" else "json (default) or csv")
        s.add_argument("--output", metavar="FILE", help="write the output to FILE instead of stdout")
        _db_arg(s)
    s = sub.add_parser("diff", help="two saved runs: per-cell ratios of the main metrics, and the settings that differ")
    s.add_argument("a", metavar="A")
    s.add_argument("b", metavar="B")
    s.add_argument("--format", default="table", help="table (default) or json")
    _db_arg(s)
    s = sub.add_parser("rerun", help="rerun the records of a JSON file; exit 1 unless each is byte-identical")
    s.add_argument("file", metavar="FILE", help="JSON records (--format json of run, compare, replay, sweep)")


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
    for note in cfg.notes:
        sys.stderr.write(f"kalloc: note: {escaped(note, one_line=True)}\n")
    for path in (cfg.output, cfg.plot):
        _check_writable(path)
    if cfg.plot:
        plot.require()
    if cfg.trace:
        check_trace(cfg.trace)
    if getattr(args, "save", None) is not None:
        runsdb.check_save(runsdb.db_path(args.db), args.save or None)
    args.output = cfg.output        # the config file's `output = ...` too, for _emit
    return cfg


def _finish(args, cfg, view: dict, records: list) -> str:
    """The command's output; the records saved first if --save asks."""
    if args.save is not None:
        name = runsdb.save(runsdb.db_path(args.db), args.save or None, args.command, args.argv, view, records)
        sys.stderr.write(f"kalloc: saved as {escaped(name, one_line=True)} (kalloc show {escaped(name, True)})\n")
    return present(view, records, cfg.format)


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


def cmd_info(args) -> str:
    from kalloc.malloc import boot
    cfg = _config(args, single=("backends", "ncpus"))
    b = cfg.backends[0]
    k = boot(cfg.backend_of(b), ncpus=cfg.ncpus[0], physmem=cfg.physmem, seed=cfg.seed, arch=cfg.arch,
             **cfg.options_for(b))
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
    records = experiment.untimed(experiment.run_records(cfg), args.timing)
    if cfg.plot:
        plot.plot_series(records, cfg.plot)
    return _finish(args, cfg, {"command": "run"}, records)


def _lines(run):
    """``run(tick)`` with a progress line of trace operations on stderr (when it is a terminal)."""
    bar = _progress_lines()
    try:
        return run(bar)
    finally:
        if bar:
            sys.stderr.write("\n")           # end the progress line


def cmd_replay(args) -> str:
    cfg = _config(args)
    check_trace(args.trace)
    explicit = args.ncpus is not None or "ncpus" in _file(args)
    if explicit and len(cfg.ncpus) > 1:
        raise ValueError(f"replay takes one --ncpus (the trace's CPUs fold onto it), not {len(cfg.ncpus)}")
    records = experiment.untimed(_lines(lambda bar: experiment.replay_records(
        cfg, args.trace, cfg.ncpus[0] if explicit else None, False if args.no_pipeline else None, bar)), args.timing)
    if cfg.plot:
        plot.plot_series(records, cfg.plot)
    return _finish(args, cfg, {"command": "replay"}, records)


def cmd_compare(args) -> str:
    cfg = _config(args, (1, 2, 4))
    def grid(bar=None):
        return experiment.compare_records(cfg, _progress, bar)
    records = experiment.untimed(_lines(grid) if cfg.trace else grid(), args.timing)
    if cfg.plot:
        plot.plot_compare(summarize(records), cfg.plot)
    return _finish(args, cfg, {"command": "compare"}, records)


def cmd_scale(args) -> str:
    cfg = _config(args, (1, 2, 4, 8))
    records = experiment.untimed(experiment.grid_records(cfg, _progress), args.timing)
    if cfg.plot:
        plot.plot_scale(scale_rows(summarize(records)), cfg.plot)
    return _finish(args, cfg, {"command": "scale"}, records)


def cmd_sweep(args) -> str:
    from kalloc.sweep import sweep_command
    cfg = _config(args, (2,), single=("ncpus",))
    records, view = sweep_command(args, cfg, _progress)
    return _finish(args, cfg, view, records)


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


def _format(fmt: str, known=FORMATS) -> str:
    if fmt not in known:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(known)})")
    return fmt


def cmd_runs(args) -> str:
    path = runsdb.db_path(args.db)
    fmt = _format(args.format)
    if args.delete is not None:
        runsdb.delete(path, args.delete)
        return f"deleted {args.delete}\n"
    rows = runsdb.runs(path)
    if not rows and fmt == "table":
        return f"no saved runs in {path} (save one with --save)\n"
    return render(rows, fmt, to_table)


def cmd_show(args) -> str:
    fmt = _format(args.format)
    run, records = runsdb.load(runsdb.db_path(args.db), args.name)
    return present(run["view"], records, fmt)


def cmd_export(args) -> str:
    fmt = _format(args.format, ("json", "csv"))
    return render(runsdb.load(runsdb.db_path(args.db), args.name)[1], fmt, None)


def cmd_diff(args) -> str:
    from kalloc.rundiff import diff, diff_table
    from kalloc.export import to_json
    fmt = _format(args.format, ("table", "json"))
    path = runsdb.db_path(args.db)
    (ra, a), (rb, b) = runsdb.load(path, args.a), runsdb.load(path, args.b)
    d = diff(a, b)
    if fmt == "json":
        return to_json(d)
    return f"A = {args.a}: {ra['command']}\nB = {args.b}: {rb['command']}\n\n" + diff_table(d, "A", "B")


def cmd_rerun(args) -> str:
    from kalloc.rerun import load_records, rerun

    def say(line: str) -> None:
        sys.stdout.write(escaped(line, one_line=True) + "\n")
        sys.stdout.flush()
    load_records(args.file)                 # bad input before any work
    args.status = 0 if rerun(args.file, say) else 1
    return ""


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
    "runs": cmd_runs,
    "show": cmd_show,
    "export": cmd_export,
    "diff": cmd_diff,
    "rerun": cmd_rerun,
}


def main(argv=None) -> int:
    try:
        args = make_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)      # for --save
        _check_writable(getattr(args, "output", None))
        text = COMMANDS[args.command](args)
        _emit(text, getattr(args, "output", None))
        return getattr(args, "status", 0)
    except (UsageError, ValueError, TypeError, OSError, EOFError, KallocError) as e:
        what = "simulated kernel panic: " if isinstance(e, KernelPanic) else ""
        sys.stderr.write(f"kalloc: {what}{escaped(str(e), one_line=True)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("kalloc: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
