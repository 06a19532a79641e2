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

    [costs]                  # cycle prices (docs/cost-model.md); preset = "2003" | "modern" | "1994"
    ipi_send = 1500

    [run]                    # how runs are measured
    warmup = 5000            # allocator operations before measuring (default: the workload's own)

Unknown keys, wrong types and bad values are errors (ValueError with a message that
names the key), never silently ignored.  A config file holds at most MAX_CONFIG_BYTES.
"""

from __future__ import annotations

import datetime
import tomllib

from attrs import field, frozen

from kalloc import plugins
from kalloc.backends.base import COMMON_OPTIONS, resolve_options
from kalloc.costs import CostModel
from kalloc.machine import ARCHES, check_physmem, parse_size
from kalloc.workload import resolve_params

TOP_KEYS = {"backend", "backends", "workload", "workloads", "ncpus", "physmem", "seed", "arch",
            "repeat", "jobs", "format", "output", "plot", "trace", "options", "params", "costs",
            "executor", "scheduler", "run", "sweep"}
RUN_KEYS = {"warmup"}
FORMATS = ("table", "json", "csv")
MAX_CONFIG_BYTES = 1 << 20    # a config file is a few lines: anything bigger is a mistake (/dev/zero)
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
    warmup: int | None = None               # None: each workload's own (replay: 0)
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
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"config file {path!r} not found") from None
    except OSError as e:
        raise ValueError(f"config file {path!r} cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"config file {path!r} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
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
    """['a=1', 'slab.b=x'] -> {'a': 1, 'slab.b': 'x'}.  One line each: a newline would
    make the rest of the value further TOML lines."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} expects key=value, got {item!r}")
        if not item.isprintable():
            raise ValueError(f"{what} {key.strip()!r}: the value holds a newline or another control "
                             f"character, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def _as_list(value, what: str) -> tuple:
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")] if value.strip() else []
        if "" in items:
            raise ValueError(f"{what} has an empty item in {value!r}")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise ValueError(f"{what} must not be empty")
    return tuple(items)


def _text(value):
    """A value for a setting that takes a string, as the user typed it: a TOML literal or an
    unquoted --set value such as 4.8, 2003 or 2003-09-14 is read as a float, an int or a date,
    and page_policy, preset and the like are named by such words."""
    if isinstance(value, (int, float, datetime.date, datetime.time)) and not isinstance(value, bool):
        return value.isoformat() if isinstance(value, (datetime.date, datetime.time)) else str(value)
    return value


def _path(value, what: str) -> str | None:
    """A file name or address: a non-empty string, or None when not given."""
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{what} must be a file name, got {value!r}" if what != "scheduler"
                         else f"scheduler must be an address such as tcp://host:8786, got {value!r}")
    return value


def _word(value, what: str, known) -> str:
    """A setting that names one of ``known`` (a string, as --arch json or arch = "amd64")."""
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"unknown {what} {value!r} (known: {', '.join(known)})")
    return value


def _name(value, what: str) -> str:
    """An item of backends or workloads: a name, looked up by the plugin registry."""
    if not isinstance(value, str):
        raise ValueError(f"{what} lists {value!r}: a {what[:-1]} is named by a string")
    return value


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
            if k not in known[scope]:
                raise ValueError(f"unknown {kind} {k!r} for {per} {scope!r} in {key!r} "
                                 f"(known: {', '.join(sorted(known[scope])) or 'none'})")
            out[scope][k] = value
            continue
        takers = [n for n in names if key in known[n]]
        if not takers:
            raise ValueError(f"unknown {kind} {key!r} for {', '.join(names)}")
        for n in takers:
            out[n][key] = value
    return out


def _table(value, what: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"[{what}] must be a table, got {value!r}")
    return value


def _flatten_tables(table: dict, what: str) -> dict:
    """TOML {'k': v, 'slab': {'k2': v2}} -> {'k': v, 'slab.k2': v2}."""
    flat = {}
    for k, v in _table(table, what).items():
        if isinstance(v, dict):
            flat.update({f"{k}.{k2}": v2 for k2, v2 in v.items()})
        else:
            flat[k] = v
    return flat


def _listing(pick, keys: tuple, default: tuple, single: tuple, check=None) -> tuple:
    """The list a setting names (``keys``: its plural and singular spellings), each item
    checked; an item named twice is an error (it would run twice and count as two seeds),
    and so is a list given to a command that takes one (``single``), which otherwise takes
    the first of the default list."""
    what = keys[0]
    given = pick(*keys)
    items = _as_list(default if given is None else given, what)
    items = tuple(map(check, items)) if check else items
    for item in items:
        if items.count(item) > 1:
            raise ValueError(f"{what} lists {item!r} twice")
    if what in single:
        if len(items) > 1 and given is not None:
            one = "CPU count" if what == "ncpus" else keys[-1]
            raise ValueError(f"this command takes one {one}, not {len(items)} ({', '.join(map(str, items))}); "
                             f"compare takes lists")
        items = items[:1]
    return items


def _trial_boots(backends: tuple, options: dict, ncpus: int, physmem: int, arch: str) -> None:
    """Boot each backend once with its options: what only a boot can refuse (slab's
    redzone at 32K zones, zone_cache=0 without zone_trim=malloc) fails before any run."""
    from kalloc.malloc import boot          # (kalloc.malloc imports the plugins' backends)
    for b in backends:
        boot(b, ncpus=ncpus, physmem=physmem, arch=arch, **options[b])


def build(file: dict, cli: dict, default_ncpus=(1,), single: tuple = ()) -> Config:
    """Merge a loaded TOML dict and the command line's values (None = not given);
    ``default_ncpus`` is the command's own default CPU list; ``single`` names the settings
    ("backends", "workloads", "ncpus") of which the command takes one value."""

    def pick(*keys, default=None):
        """The first source's value of a setting (``keys``: its spellings, one per source)."""
        for src in (cli, file):
            given = [k for k in keys if src.get(k) is not None]
            if len(given) > 1:
                raise ValueError(f"{' and '.join(given)} are both given{' in the file' if src is file else ''}: "
                                 f"give one")
            if given:
                return src[given[0]]
        return default

    backends = _listing(pick, ("backends", "backend"), ("slab", "kmem_map"), single,
                        lambda b: _name(b, "backends"))
    workloads = _listing(pick, ("workloads", "workload"), DEFAULT_WORKLOADS, single,
                         lambda w: _name(w, "workloads"))
    known_backends = plugins.backends()
    for b in backends:
        plugins.backend_class(b)
    for w in workloads:
        plugins.workload_class(w)
    ncpus = _listing(pick, ("ncpus",), default_ncpus, single, lambda n: _int(n, "ncpus", 1, 1024))
    physmem = parse_size(pick("physmem", default="64M"), "physmem")
    fmt = _word(pick("format", default="table"), "format", FORMATS)
    executor = _word(pick("executor", default="local"), "executor", ("local", "dask"))
    if executor != "dask" and pick("scheduler") is not None:
        raise ValueError("scheduler is the address of a Dask scheduler: it needs executor dask")

    opt_flat = {**_flatten_tables(file.get("options", {}), "options"), **cli.get("options", {})}
    known_opts = {b: {**COMMON_OPTIONS, **known_backends[b][0].OPTIONS} for b in backends}
    options = _split_scoped(opt_flat, backends, known_opts, "option", "backend")
    for b in backends:
        for k, v in options[b].items():
            if isinstance(known_opts[b][k].default, str):
                options[b][k] = _text(v)

    par_flat = {**_flatten_tables(file.get("params", {}), "params"), **cli.get("params", {})}
    known_params = {w: plugins.workload_class(w).PARAMS for w in workloads}
    params = _split_scoped(par_flat, workloads, known_params, "parameter", "workload")

    costs = {**_table(file.get("costs", {}), "costs"), **cli.get("costs", {})}
    if "preset" in costs:
        costs["preset"] = _text(costs["preset"])
    run = _table(file.get("run", {}), "run")
    unknown = set(run) - RUN_KEYS
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in [run] (known: {', '.join(sorted(RUN_KEYS))})")
    warmup = cli.get("warmup") if cli.get("warmup") is not None else run.get("warmup")
    if warmup is not None:
        warmup = _int(warmup, "warmup", 0)
    arch = _word(pick("arch", default="i386"), "arch", ARCHES)
    check_physmem(physmem, ARCHES[arch])
    # Check every value now, so a bad one fails before anything runs.
    for b in backends:
        resolve_options(known_backends[b][0], options[b])
    for w in workloads:
        resolve_params(plugins.workload_class(w), params[w])
    CostModel.from_config(costs)
    _trial_boots(backends, options, max(ncpus), physmem, arch)
    if "sweep" in file:                     # read by `kalloc sweep` and `sensitivity`, checked by all
        from kalloc.sweep import check_section
        check_section(file["sweep"])
    return Config(
        backends=backends, workloads=workloads, ncpus=ncpus, physmem=physmem,
        seed=_int(pick("seed", default=0), "seed", 0), arch=arch,
        repeat=_int(pick("repeat", default=1), "repeat", 1, 1000),
        jobs=_int(pick("jobs", default=1), "jobs", 1, 1024), format=fmt,
        output=_path(pick("output"), "output"), plot=_path(pick("plot"), "plot"),
        trace=_path(pick("trace"), "trace"), executor=executor, scheduler=_path(pick("scheduler"), "scheduler"),
        warmup=warmup, options=options, params=params, costs=costs,
    )
