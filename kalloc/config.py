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

    [[variant]]              # a backend (or workload) again with other settings (kalloc.variants)
    name = "passive"
    backend = "slab"
    options = { remote_free = "passive" }

An item of a list may also be a variant written in place: ``"slab[remote_free=passive]"``.
One file serves every command: a section for a backend, workload or variant that the
command does not select is ignored, with a note (``Config.notes``, printed on stderr).

Unknown keys, wrong types and bad values are errors (ValueError with a message that
names the key), never silently ignored.  A config file holds at most MAX_CONFIG_BYTES.
"""

from __future__ import annotations

import datetime
import tomllib

from attrs import field, frozen

from kalloc import plugins
from kalloc import variants as _variants
from kalloc.backends.base import COMMON_OPTIONS, resolve_options
from kalloc.costs import CostModel
from kalloc.machine import ARCHES, check_physmem, parse_size
from kalloc.workload import resolve_params

TOP_KEYS = {"backend", "backends", "workload", "workloads", "ncpus", "physmem", "seed", "arch",
            "repeat", "jobs", "format", "output", "plot", "trace", "options", "params", "costs",
            "executor", "scheduler", "run", "sweep", "variant"}
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
    options: dict = field(factory=dict)     # backend label -> {option: value}
    params: dict = field(factory=dict)      # workload label -> {param: value}
    costs: dict = field(factory=dict)
    variants: dict = field(factory=dict)    # backend label -> Variant (the labels are `backends`)
    workload_variants: dict = field(factory=dict)   # workload label -> Variant
    notes: tuple = ()                       # what of the file this command ignored, for stderr

    def options_for(self, backend: str) -> dict:
        return dict(self.options.get(backend, {}))

    def params_for(self, workload: str) -> dict:
        return dict(self.params.get(workload, {}))

    def backend_of(self, label: str) -> str:
        """The backend a label of ``backends`` runs (the label itself without variants)."""
        v = self.variants.get(label)
        return label if v is None else v.name

    def workload_of(self, label: str) -> str:
        v = self.workload_variants.get(label)
        return label if v is None else v.name

    @property
    def names(self) -> dict:
        """{label: plugin} of every variant, backends' and workloads'."""
        return {lab: v.name for table in (self.workload_variants, self.variants) for lab, v in table.items()}


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
        items = _variants.split_items(value) if value.strip() else []
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


def _split_scoped(flat: dict, names: tuple, known: dict, kind: str, per: str,
                  others: dict | None = None, notes: list | None = None) -> dict:
    """{'k': v, 'name.k': v} -> {name: {k: v}}; an unscoped key goes to every name that
    declares it, and must be declared by at least one of them.  ``others``: {name: known
    keys} of the installed plugins that are not selected, for the file's keys: one for them
    only is ignored with a line in ``notes`` (one file serves every command), not an error."""
    out = {n: {} for n in names}
    for key, value in flat.items():
        scope, dot, k = key.rpartition(".")
        if dot:
            if scope not in out and others is not None and scope in others:
                notes.append(f"{kind} {key!r} is for {per} {scope!r}, which this command does not select: ignored")
                continue
            if scope not in out:
                raise ValueError(f"{kind} {key!r} names {per} {scope!r}, which is not selected "
                                 f"(selected: {', '.join(names)})")
            if k not in known[scope]:
                raise ValueError(f"unknown {kind} {k!r} for {per} {scope!r} in {key!r} "
                                 f"(known: {', '.join(sorted(known[scope])) or 'none'})")
            out[scope][k] = value
            continue
        takers = [n for n in names if key in known[n]]
        if not takers and others is not None and any(key in ks for ks in others.values()):
            notes.append(f"{kind} {key!r} is for none of the selected {per}s ({', '.join(names)}): ignored")
            continue
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
    shown = [getattr(item, "label", item) for item in items]
    for item in shown:
        if shown.count(item) > 1:
            raise ValueError(f"{what} lists {item!r} twice")
    if what in single:
        if len(items) > 1 and given is not None:
            one, flag = ("CPU count", "--ncpus N") if what == "ncpus" else (keys[-1], f"--{keys[-1]} NAME")
            raise ValueError(f"this command takes one {one}, not {len(items)} ({', '.join(map(str, shown))}): "
                             f"choose one with {flag} (compare takes lists)")
        items = items[:1]
    return items


def _trial_boots(variants: tuple, options: dict, ncpus: int, physmem: int, arch: str) -> None:
    """Boot each backend (variant) once with its options: what only a boot can refuse (slab's
    redzone at 32K zones, zone_cache=0 without zone_trim=malloc) fails before any run."""
    from kalloc.malloc import boot          # (kalloc.malloc imports the plugins' backends)
    for v in variants:
        boot(v.name, ncpus=ncpus, physmem=physmem, arch=arch, **options[v.label])


def _by_label(variants: tuple, by_name: dict, convert=None) -> dict:
    """{label: the settings of its plugin overlaid with the variant's own}."""
    return {v.label: {**by_name[v.name], **(convert(v) if convert else v.settings)} for v in variants}


def _scoped(section: str, file: dict, cli: dict, names: tuple, known: dict, kind: str, per: str,
            installed: dict, notes: list) -> dict:
    """A section's settings by plugin name: the file's, where one for a plugin the command
    does not select is ignored with a note, overlaid with the command line's (which must
    name a selected plugin)."""
    others = {n: ks for n, ks in installed.items() if n not in names}
    from_file = _split_scoped(_flatten_tables(file.get(section, {}), section), names, known, kind, per,
                              others, notes)
    from_cli = _split_scoped(cli.get(section, {}), names, known, kind, per)
    return {n: {**from_file[n], **from_cli[n]} for n in names}


def _selected(pick, single: tuple, tables: dict) -> tuple:
    """The backends' and the workloads' variants the command runs, and notes on the file's
    [[variant]] tables it leaves out."""
    bvars = _listing(pick, ("backends", "backend"), ("slab", "kmem_map"), single,
                     lambda b: _variants.resolve(b, "backend", tables))
    wvars = _listing(pick, ("workloads", "workload"), DEFAULT_WORKLOADS, single,
                     lambda w: _variants.resolve(w, "workload", tables))
    for v in bvars:
        plugins.backend_class(v.name)
    for v in wvars:
        plugins.workload_class(v.name)
    clash = [n for n in tables if n in plugins.backends() or n in plugins.workloads()]
    if clash:
        raise ValueError(f"[[variant]] name {clash[0]!r} is the name of a plugin: give the variant another")
    notes = [f"[[variant]] {n!r} is not selected by this command: ignored"
             for n in _variants.unused(tables, [v.label for v in bvars + wvars])]
    return bvars, wvars, notes


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

    bvars, wvars, notes = _selected(pick, single, _variants.check_tables(file.get("variant", [])))
    backends = tuple(dict.fromkeys(v.name for v in bvars))       # the plugins
    workloads = tuple(dict.fromkeys(v.name for v in wvars))
    known_backends = plugins.backends()
    ncpus = _listing(pick, ("ncpus",), default_ncpus, single, lambda n: _int(n, "ncpus", 1, 1024))
    physmem = parse_size(pick("physmem", default="64M"), "physmem")
    fmt = _word(pick("format", default="table"), "format", FORMATS)
    executor = _word(pick("executor", default="local"), "executor", ("local", "dask"))
    if executor != "dask" and pick("scheduler") is not None:
        raise ValueError("scheduler is the address of a Dask scheduler: it needs executor dask")

    all_opts = {b: {**COMMON_OPTIONS, **cls.OPTIONS} for b, (cls, _) in known_backends.items()}
    known_opts = {b: all_opts[b] for b in backends}
    options = _scoped("options", file, cli, backends, known_opts, "option", "backend", all_opts, notes)

    def texts(b: str, given: dict) -> dict:
        """A string option's value as its text (see _text); an unknown one is left for resolve_options."""
        return {k: _text(v) if k in all_opts[b] and isinstance(all_opts[b][k].default, str) else v
                for k, v in given.items()}
    options = _by_label(bvars, {b: texts(b, o) for b, o in options.items()}, lambda v: texts(v.name, v.settings))

    all_params = {w: cls.PARAMS for w, (cls, _) in plugins.workloads().items()}
    params = _by_label(wvars, _scoped("params", file, cli, workloads, {w: all_params[w] for w in workloads},
                                      "parameter", "workload", all_params, notes))

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
    for v in bvars:
        _checked_variant(v, "backends", lambda: resolve_options(known_backends[v.name][0], options[v.label]))
    for v in wvars:
        _checked_variant(v, "workloads", lambda: resolve_params(plugins.workload_class(v.name), params[v.label]))
    CostModel.from_config(costs)
    _trial_boots(bvars, options, max(ncpus), physmem, arch)
    if "sweep" in file:                     # read by `kalloc sweep` and `sensitivity`, checked by all
        from kalloc.sweep import check_section
        check_section(file["sweep"])
    return Config(
        backends=tuple(v.label for v in bvars), workloads=tuple(v.label for v in wvars), ncpus=ncpus, physmem=physmem,
        seed=_int(pick("seed", default=0), "seed", 0), arch=arch,
        repeat=_int(pick("repeat", default=1), "repeat", 1, 1000),
        jobs=_int(pick("jobs", default=1), "jobs", 1, 1024), format=fmt,
        output=_path(pick("output"), "output"), plot=_path(pick("plot"), "plot"),
        trace=_path(pick("trace"), "trace"), executor=executor, scheduler=_path(pick("scheduler"), "scheduler"),
        warmup=warmup, options=options, params=params, costs=costs,
        variants={v.label: v for v in bvars}, workload_variants={v.label: v for v in wvars}, notes=tuple(notes),
    )


def _checked_variant(v, what: str, check) -> None:
    """``check()``, its error naming the variant whose own settings it is about."""
    try:
        check()
    except ValueError as e:
        if not v.settings:
            raise
        raise ValueError(f"{what} lists {v.label!r}: {e}") from None
