"""Configuration: a TOML file and the command line merged into one frozen Config.

Every command-line option can come from the file; the command line wins.  A file::

    backends = ["slab", "kmem_map"]     # or: backend = "slab"
    workloads = ["net", "tty"]          # or: workload = "net"
    ncpus = [1, 2, 4]                   # or: ncpus = 2
    physmem = "64M"
    seed = 0
    repeat = 3
    arch = "i386"

    [options]                # backend options, for every backend that declares them
    page_policy = "2003-08"
    [options.slab]           # options for one backend only
    remote_free = "passive"

    [params.net]             # workload parameters
    packets = 2000

    [costs]                  # cycle prices (docs/cost-model.md); preset = "2003" | "modern"
    ipi_send = 1500

Unknown keys, wrong types and bad values are errors (ValueError with a message that
names the key), never silently ignored.
"""

from __future__ import annotations

import tomllib

from attrs import field, frozen

from kalloc import plugins
from kalloc.backends.base import COMMON_OPTIONS, resolve_options
from kalloc.costs import CostModel
from kalloc.machine import ARCHES, parse_size
from kalloc.workload import resolve_params

TOP_KEYS = {"backend", "backends", "workload", "workloads", "ncpus", "physmem", "seed", "arch",
            "repeat", "jobs", "format", "output", "plot", "trace", "options", "params", "costs",
            "executor", "scheduler"}
FORMATS = ("table", "json", "csv")
DEFAULT_WORKLOADS = ("tty", "net", "fs", "scsi", "larson", "prodcons")


@frozen
class Config:
    backends: tuple = ("slab", "kmem_map")
    workloads: tuple = DEFAULT_WORKLOADS
    ncpus: tuple = (1,)
    physmem: int = 64 << 20
    seed: int = 0
    arch: str = "i386"
    repeat: int = 1
    jobs: int = 1
    format: str = "table"
    output: str | None = None
    plot: str | None = None
    trace: str | None = None
    executor: str = "local"
    scheduler: str | None = None
    options: dict = field(factory=dict)     # backend -> {option: value}
    params: dict = field(factory=dict)      # workload -> {param: value}
    costs: dict = field(factory=dict)

    def options_for(self, backend: str) -> dict:
        return dict(self.options.get(backend, {}))

    def params_for(self, workload: str) -> dict:
        return dict(self.params.get(workload, {}))


def load_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file {path!r} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path!r} is not valid TOML: {e}") from None
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise ValueError(f"config file {path!r}: unknown key(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(TOP_KEYS))})")
    return data


def parse_value(text: str):
    """A --set/--param value: a TOML literal (42, 1.5, true, "x", [1, 2]) or a bare word."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_assignments(items, what: str) -> dict:
    """['a=1', 'slab.b=x'] -> {'a': 1, 'slab.b': 'x'}."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} expects key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _as_list(value, what: str) -> tuple:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise ValueError(f"{what} must not be empty")
    return tuple(items)


def _int(value, what: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{what} must be between {lo} and {hi}, got {value}" if hi
                         else f"{what} must be at least {lo}, got {value}")
    return value


def _split_scoped(flat: dict, names: tuple, known: dict, kind: str, per: str) -> dict:
    """{'k': v, 'name.k': v} -> {name: {k: v}}; an unscoped key goes to every name that
    declares it, and must be declared by at least one of them."""
    out = {n: {} for n in names}
    for key, value in flat.items():
        scope, dot, k = key.rpartition(".")
        if dot:
            if scope not in out:
                raise ValueError(f"{kind} {key!r} names {per} {scope!r}, which is not selected "
                                 f"(selected: {', '.join(names)})")
            out[scope][k] = value
            continue
        takers = [n for n in names if key in known[n]]
        if not takers:
            raise ValueError(f"unknown {kind} {key!r} for {', '.join(names)}")
        for n in takers:
            out[n][key] = value
    return out


def _flatten_tables(table: dict, what: str) -> dict:
    """TOML {'k': v, 'slab': {'k2': v2}} -> {'k': v, 'slab.k2': v2}."""
    if not isinstance(table, dict):
        raise ValueError(f"[{what}] must be a table")
    flat = {}
    for k, v in table.items():
        if isinstance(v, dict):
            flat.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
        else:
            flat[k] = v
    return flat


def build(file: dict, cli: dict, default_ncpus=(1,)) -> Config:
    """Merge a loaded TOML dict and the command line's values (None = not given);
    ``default_ncpus`` is the command's own default CPU list."""

    def pick(*keys, default=None):
        for src in (cli, file):
            for k in keys:
                if src.get(k) is not None:
                    return src[k]
        return default

    backends = _as_list(pick("backends", "backend", default=("slab", "kmem_map")), "backends")
    workloads = _as_list(pick("workloads", "workload", default=DEFAULT_WORKLOADS), "workloads")
    known_backends = plugins.backends()
    for b in backends:
        plugins.backend_class(b)
    for w in workloads:
        plugins.workload_class(w)
    ncpus = tuple(_int(n, "ncpus", 1, 1024) for n in _as_list(pick("ncpus", default=default_ncpus), "ncpus"))
    physmem = parse_size(pick("physmem", default="64M"), "physmem")
    fmt = pick("format", default="table")
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    executor = pick("executor", default="local")
    if executor not in ("local", "dask"):
        raise ValueError(f"unknown executor {executor!r} (known: local, dask)")

    opt_flat = {**_flatten_tables(file.get("options", {}), "options"), **cli.get("options", {})}
    known_opts = {b: {**COMMON_OPTIONS, **known_backends[b][0].OPTIONS} for b in backends}
    options = _split_scoped(opt_flat, backends, known_opts, "option", "backend")

    par_flat = {**_flatten_tables(file.get("params", {}), "params"), **cli.get("params", {})}
    known_params = {w: plugins.workload_class(w).PARAMS for w in workloads}
    params = _split_scoped(par_flat, workloads, known_params, "parameter", "workload")

    costs = {**file.get("costs", {}), **cli.get("costs", {})}
    arch = pick("arch", default="i386")
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r} (known: {', '.join(ARCHES)})")
    # Check every value now, so a bad one fails before anything runs.
    for b in backends:
        resolve_options(known_backends[b][0], options[b])
    for w in workloads:
        resolve_params(plugins.workload_class(w), params[w])
    CostModel.from_config(costs)
    return Config(
        backends=backends, workloads=workloads, ncpus=ncpus, physmem=physmem,
        seed=_int(pick("seed", default=0), "seed", 0), arch=arch,
        repeat=_int(pick("repeat", default=1), "repeat", 1, 1000),
        jobs=_int(pick("jobs", default=1), "jobs", 1, 1024), format=fmt,
        output=pick("output"), plot=pick("plot"), trace=pick("trace"),
        executor=executor, scheduler=pick("scheduler"),
        options=options, params=params, costs=costs,
    )
