"""Sweeps and sensitivity: how a comparison changes as prices, options, parameters or CPUs vary.

``kalloc sweep`` runs the product of the varied keys x backends x workloads (x seeds), each
record carrying ``"point": {KEY: value}``; with ``--ratio A/B`` it reports metric(A) /
metric(B) at every point and where that ratio crosses 1 (the *crossover*, linearly
interpolated between two adjacent points of one key, the other keys fixed).
``kalloc sensitivity`` is the one-at-a-time sweep of every price of the cost model across
``kalloc.costs.RANGES`` (low, nominal, high), sorted by swing: a tornado.

A KEY is one of

* ``cost.<price>``: a field of the cost model (kalloc.costs.CostModel), in cycles;
* ``<backend>.<option>``: an option of one selected backend; ``<option>``: of every selected
  backend that declares it (kalloc.backends.base.COMMON_OPTIONS and each backend's OPTIONS);
* ``<workload>.<param>``: a parameter of one selected workload; ``param.<param>``: of every
  selected workload that has it;
* ``ncpus``: the simulated CPUs.

A SPEC is a list ``a,b,c`` (TOML literals or bare words, as ``--set`` reads them) or a range
``lo:hi:n``: n points from lo to hi inclusive, integers where the key takes an integer.
Everything is checked before anything runs: a bad key or value is a ValueError naming it.

Like every grid, a sweep is deterministic: records come back in spec order from any executor.
"""

from __future__ import annotations

import copy
import itertools
import json
import statistics
from fractions import Fraction

import attrs
from attrs import frozen
from tabulate import tabulate

from kalloc import costs as _costs
from kalloc import plugins
from kalloc.backends.base import COMMON_OPTIONS, resolve_options
from kalloc.config import _int, _text, parse_value
from kalloc.costs import CostModel
from kalloc.executors import run_grid
from kalloc.export import flatten
from kalloc.harness import RunSpec, labels
from kalloc.workload import resolve_params

DEFAULT_METRIC = "sim.throughput_ops_per_mcycle"
SECTION_KEYS = ("vary", "ratio", "metric")          # the [sweep] table of a TOML file

# The scalar metrics of a record (docs/comparing.md, "The JSON record"), by section; the
# keys of ``counters`` and ``workload_counts`` depend on the backend and the workload and
# are checked against the records once they are in.
_LAT = ("count", "mean", "p50", "p90", "p99", "p999", "max")
METRICS = {
    "sim": ("cycles", "makespan_cycles", "throughput_ops_per_mcycle", "cycles_per_op", "allocator_share",
            "lock_wait_cycles", "ipis", "tlb_shootdowns"),
    "ops": ("malloc", "free", "realloc", "failed"),
    "warmup": ("ops", "cycles", "peak_footprint_bytes", "bytes_zeroed"),
    "memory": ("peak_requested_bytes", "peak_footprint_bytes", "end_footprint_bytes", "boot_footprint_bytes",
               "peak_growth_bytes", "requested_at_peak_bytes", "overhead_ratio", "mean_overhead_ratio",
               "internal_fragmentation_bytes"),
    "zeroing": ("bytes_zeroed", "bytes_zero_requested", "pages_prezeroed"),
    "latency": {kind: _LAT for kind in ("malloc", "free", "ipi_handler")},
}
OPEN_SECTIONS = ("counters", "workload_counts")


# --- keys and values ------------------------------------------------------------------------

@frozen
class Key:
    """A varied key as the user wrote it (``name``) and what it sets: ``kind`` is cost,
    option, param or ncpus; ``field`` the price, option or parameter; ``scopes`` the backends
    (option) or workloads (param) it applies to; ``type`` the Python type its values take."""

    name: str
    kind: str
    field: str
    scopes: tuple
    type: type


def _taker_type(defaults: list, key: str) -> type:
    types = {type(d) for d in defaults}
    if types <= {int, float} and float in types:
        return float
    if len(types) > 1:
        raise ValueError(f"--vary {key}: the selected backends or workloads give it values of different "
                         f"types; scope it to one (backend.option or workload.param)")
    return types.pop()


def resolve_key(key: str, backends=None, workloads=None) -> Key:
    """What ``key`` varies, among the selected ``backends`` and ``workloads`` (None: every
    installed one).  ValueError naming the key if it names nothing."""
    installed_b, installed_w = plugins.backends(), plugins.workloads()
    backends = tuple(installed_b) if backends is None else tuple(backends)
    workloads = tuple(installed_w) if workloads is None else tuple(workloads)
    if key == "ncpus":
        return Key(key, "ncpus", "ncpus", (), int)
    scope, dot, name = key.partition(".")
    if dot and not name:
        raise ValueError(f"--vary {key!r}: nothing after the dot")
    if dot and scope == "cost":
        fields = {f.name: f for f in attrs.fields(CostModel)}
        if name not in fields:
            raise ValueError(f"--vary {key}: unknown price {name!r} (known: {', '.join(sorted(fields))})")
        return Key(key, "cost", name, (), int)
    if dot and (scope == "param" or scope in workloads and scope not in backends):
        where = workloads if scope == "param" else (scope,)
        takers = [w for w in where if name in plugins.workload_class(w).PARAMS]
        if not takers:
            raise ValueError(f"--vary {key}: unknown parameter {name!r} for workload(s) {', '.join(where)}")
        return Key(key, "param", name, tuple(takers),
                   _taker_type([plugins.workload_class(w).PARAMS[name] for w in takers], key))
    if dot and scope in backends:
        known = {**COMMON_OPTIONS, **installed_b[scope][0].OPTIONS}
        if name not in known:
            raise ValueError(f"--vary {key}: unknown option {name!r} for backend {scope!r} "
                             f"(known: {', '.join(sorted(known))})")
        return Key(key, "option", name, (scope,), type(known[name].default))
    if dot:
        if scope in installed_b or scope in installed_w:
            what = "backend" if scope in installed_b else "workload"
            chosen = backends if what == "backend" else workloads
            raise ValueError(f"--vary {key}: names {what} {scope!r}, which is not selected "
                             f"(selected: {', '.join(chosen)})")
        raise ValueError(f"--vary {key}: unknown key (cost.PRICE, BACKEND.OPTION, OPTION, WORKLOAD.PARAM, "
                         f"param.PARAM or ncpus; {scope!r} is no backend or workload)")
    takers = [b for b in backends if key in {**COMMON_OPTIONS, **installed_b[b][0].OPTIONS}]
    if not takers:
        raise ValueError(f"--vary {key}: unknown key: no option of {', '.join(backends)} is called {key!r} "
                         f"(cost.PRICE, BACKEND.OPTION, OPTION, WORKLOAD.PARAM, param.PARAM or ncpus)")
    opts = [{**COMMON_OPTIONS, **installed_b[b][0].OPTIONS}[key] for b in takers]
    return Key(key, "option", key, tuple(takers), _taker_type([o.default for o in opts], key))


def _typed(key: Key, value):
    """One value of ``key``, of the type the key takes (a str option's value as its text)."""
    want = key.type
    bad = isinstance(value, bool) and want is not bool
    if want is int:
        if bad or not isinstance(value, int):
            raise ValueError(f"--vary {key.name}: takes integers, got {value!r}")
    elif want is float:
        if bad or not isinstance(value, (int, float)):
            raise ValueError(f"--vary {key.name}: takes numbers, got {value!r}")
        value = float(value)
    elif want is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"--vary {key.name}: takes true or false, got {value!r}")
    elif want is str:
        value = _text(value)
        if not isinstance(value, str):
            raise ValueError(f"--vary {key.name}: takes words, got {value!r}")
    if key.kind == "ncpus":
        _int(value, "--vary ncpus", 1, 1024)
    if key.kind == "cost" and value < 0:
        raise ValueError(f"--vary {key.name}: a price is a non-negative number of cycles, got {value}")
    return value


def _range(key: Key, spec: str) -> list:
    parts = [p.strip() for p in spec.split(":")]
    if key.type not in (int, float):
        raise ValueError(f"--vary {key.name}={spec}: a range lo:hi:n needs a numeric key, and {key.name} "
                         f"takes {key.type.__name__} values: give a list a,b,c")
    try:
        lo, hi, n = (parse_value(p) for p in parts)
    except ValueError:
        raise ValueError(f"--vary {key.name}={spec}: a range is lo:hi:n") from None
    for what, v in (("lo", lo), ("hi", hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"--vary {key.name}={spec}: {what} must be a number, got {v!r}")
        if key.type is int and not isinstance(v, int):
            raise ValueError(f"--vary {key.name}={spec}: {key.name} takes integers, so {what} must be one, got {v!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"--vary {key.name}={spec}: n, the number of points, must be an integer from 2, got {n!r}")
    if lo == hi:
        raise ValueError(f"--vary {key.name}={spec}: lo and hi are equal: give a list for one value")
    if key.type is int:
        values = [lo + round(Fraction((hi - lo) * i, n - 1)) for i in range(n)]
    else:
        values = [float(lo) + (float(hi) - float(lo)) * i / (n - 1) for i in range(n - 1)] + [float(hi)]
    if len(set(values)) < n:
        raise ValueError(f"--vary {key.name}={spec}: {n} integer points from {lo} to {hi} repeat values; "
                         f"give at most {abs(hi - lo) + 1} points")
    return [_typed(key, v) for v in values]


def parse_values(key: Key, spec) -> list:
    """The values ``spec`` gives ``key``: a str (``a,b,c`` or ``lo:hi:n``), or a list or a
    single value from a TOML file."""
    if isinstance(spec, str):
        spec = spec.strip()
        if not spec:
            raise ValueError(f"--vary {key.name}: no values")
        if ":" in spec and "," not in spec and spec.count(":") == 2:
            return _range(key, spec)
        if ":" in spec and key.type in (int, float):
            raise ValueError(f"--vary {key.name}={spec}: a range is lo:hi:n (n points), a list a,b,c")
        items = [s.strip() for s in spec.split(",")]
        if any(not s for s in items):
            raise ValueError(f"--vary {key.name}={spec}: an empty value in the list")
        values = [_typed(key, parse_value(s)) for s in items]
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ValueError(f"--vary {key.name}: no values")
        values = [_typed(key, v) for v in spec]
    else:
        values = [_typed(key, spec)]
    for v in values:
        if values.count(v) > 1:
            raise ValueError(f"--vary {key.name}: lists {v!r} twice")
    return values


def parse_vary(text: str, backends=None, workloads=None) -> tuple:
    """``"KEY=SPEC"`` -> ``(key, values)``: ``parse_vary("cost.ipi_send=300:1500:3")`` is
    ``("cost.ipi_send", [300, 900, 1500])``.  ``backends``, ``workloads``: the selected ones
    (None: every installed one), which scoped and unscoped keys are resolved against."""
    key, sep, spec = str(text).partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--vary expects KEY=SPEC (e.g. cost.ipi_send=300:1500:5), got {text!r}")
    k = resolve_key(key, backends, workloads)
    return key, parse_values(k, spec)


def check_section(section) -> dict:
    """The [sweep] table of a TOML file, its shape checked (every command reads the file)."""
    if not isinstance(section, dict):
        raise ValueError(f"[sweep] must be a table, got {section!r}")
    unknown = set(section) - set(SECTION_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))} in [sweep] (known: {', '.join(SECTION_KEYS)})")
    vary = section.get("vary")
    if vary is not None:
        ok = (isinstance(vary, list) and all(isinstance(v, str) for v in vary)) or isinstance(vary, dict)
        if not ok:
            raise ValueError(f"[sweep] vary must be a list of \"KEY=SPEC\" strings or a table {{KEY = SPEC}}, "
                             f"got {vary!r}")
    for k in ("ratio", "metric"):
        if k in section and not isinstance(section[k], str):
            raise ValueError(f"[sweep] {k} must be a string, got {section[k]!r}")
    return dict(section)


def vary_from(cli_items, section: dict, backends, workloads) -> list:
    """The varied keys, [(key, values)], from the command line's --vary or else the file's
    [sweep] vary; a key given twice, or two keys that set the same thing, is an error."""
    if cli_items:
        pairs = [parse_vary(t, backends, workloads) for t in cli_items]
    else:
        vary = section.get("vary") or []
        if isinstance(vary, dict):               # TOML reads cost.ipi_send = "..." as a table: dotted again
            pairs = [(k, parse_values(resolve_key(k, backends, workloads), v))
                     for k, v in flatten(vary, lists=True).items()]
        else:
            pairs = [parse_vary(t, backends, workloads) for t in vary]
    if not pairs:
        raise ValueError("sweep needs something to vary: --vary KEY=SPEC (or vary in the file's [sweep])")
    _check_distinct([k for k, _ in pairs], backends, workloads)
    return pairs


def _targets(key: Key) -> set:
    if key.kind in ("cost", "ncpus"):
        return {(key.kind, key.field)}
    return {(key.kind, s, key.field) for s in key.scopes}


def _check_distinct(keys: list, backends, workloads) -> None:
    seen: dict = {}
    for name in keys:
        for t in _targets(resolve_key(name, backends, workloads)):
            if t in seen:
                raise ValueError(f"--vary {name}: sets what --vary {seen[t]} sets" if seen[t] != name
                                 else f"--vary {name} is given twice")
            seen[t] = name


# --- the grid -------------------------------------------------------------------------------------

def _apply(point: dict, keys: dict, backend: str, workload: str, ncpus: int, options: dict, params: dict,
           costs: dict) -> tuple:
    """The (ncpus, options, params, costs) of ``backend`` on ``workload`` at ``point``."""
    options, params, costs = dict(options), dict(params), dict(costs)
    for name, value in point.items():
        k = keys[name]
        if k.kind == "ncpus":
            ncpus = value
        elif k.kind == "cost":
            costs[k.field] = value
        elif k.kind == "option" and backend in k.scopes:
            options[k.field] = value
        elif k.kind == "param" and workload in k.scopes:
            params[k.field] = value
    return ncpus, options, params, costs


def _check(what: str, backend: str, workload: str, ncpus: int, options, params, costs) -> None:
    try:
        resolve_options(plugins.backend_class(backend), options)
        resolve_params(plugins.workload_class(workload), params)
        CostModel.from_config(costs)
        _int(ncpus, "ncpus", 1, 1024)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def sweep_specs(vary, backends, workloads, ncpus: int = 2, seeds=(0,), *, physmem="64M", arch="i386",
                options=None, params=None, costs=None, warmup=None, variants=None) -> list:
    """The sweep's grid as ``[(point, RunSpec)]`` in a fixed order: workload, point (the
    product of the varied keys, the first varying slowest), seed, backend.  ``vary``:
    ``[(key, values)]``, ``{key: values}`` or ``["KEY=SPEC"]``; ``options``: {backend: {...}},
    ``params``: {workload: {...}}, ``costs``: the cost model's config (preset and prices), the
    base the varied keys override.  Every point is checked before this returns: a bad value
    is a ValueError naming its key (or the point, for a combination a workload refuses).
    ``variants``: {label: plugin name} of the backends and workloads that are variants
    (kalloc.variants): ``options`` and ``params`` are then by label, and keys name plugins."""
    backends, workloads = tuple(backends), tuple(workloads)
    name = plugin_names(variants)
    plugs_b, plugs_w = (tuple(dict.fromkeys(map(name, ls))) for ls in (backends, workloads))
    if isinstance(vary, dict):
        vary = list(vary.items())
    pairs = [parse_vary(v, plugs_b, plugs_w) if isinstance(v, str) else
             (v[0], parse_values(resolve_key(v[0], plugs_b, plugs_w), v[1])) for v in vary]
    if not pairs:
        raise ValueError("sweep needs something to vary")
    _check_distinct([k for k, _ in pairs], plugs_b, plugs_w)
    keys = {k: resolve_key(k, plugs_b, plugs_w) for k, _ in pairs}
    options, params, costs = options or {}, params or {}, dict(costs or {})
    base = {(b, w): (options.get(b, {}), params.get(w, {})) for b in backends for w in workloads}
    for key, values in pairs:                       # each value alone: the error names its key
        for v in values:
            for (b, w), (o, p) in base.items():
                _check(f"--vary {key}={v!r}", name(b), name(w),
                       *_apply({key: v}, keys, name(b), name(w), ncpus, o, p, costs))
    points = [dict(zip(keys, combo)) for combo in itertools.product(*(vals for _, vals in pairs))]
    out = []
    for w in workloads:
        for point in points:
            for s in seeds:
                for b in backends:
                    n, o, p, c = _apply(point, keys, name(b), name(w), ncpus, *base[(b, w)], costs)
                    if len(pairs) > 1 and s == seeds[0]:
                        _check(f"sweep point {_show(point)}", name(b), name(w), n, o, p, c)
                    out.append((dict(point), RunSpec(name(b), name(w), n, s, physmem, arch, o, p, c, warmup, b, w)))
    return out


def plugin_names(variants: dict | None):
    """label -> the plugin it runs (a label that is no variant is the plugin's name)."""
    table = variants or {}
    return lambda lab: table.get(lab, lab)


def _spec_key(spec: RunSpec) -> str:
    return json.dumps(attrs.asdict(spec), sort_keys=True, default=repr)


def distinct_specs(pairs: list) -> list:
    """The grid's distinct RunSpecs, in grid order: a key that only one backend (or workload)
    takes leaves the others' runs equal across its values, and a run is a function of its
    spec, so each is run once."""
    seen: dict = {}
    for _, s in pairs:
        seen.setdefault(_spec_key(s), s)
    return list(seen.values())


def run_sweep(pairs: list, jobs: int = 1, progress=None, executor: str = "local", scheduler=None) -> list:
    """Run ``sweep_specs``' grid: the records in grid order, each with its ``point`` (equal
    specs run once; ``progress`` ticks once per distinct run)."""
    specs = distinct_specs(pairs)
    done = dict(zip(map(_spec_key, specs), run_grid(specs, jobs, progress, executor, scheduler)))
    out, used = [], set()
    for point, spec in pairs:
        k = _spec_key(spec)
        rec = done[k] if k not in used else copy.deepcopy(done[k])
        used.add(k)
        out.append({"point": point, **rec})
    return out


def _show(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


# --- metrics, ratios and crossovers -----------------------------------------------------------------

def check_metric(metric: str) -> str:
    """A dotted path into a record that names a number (see METRICS)."""
    if not isinstance(metric, str) or not metric:
        raise ValueError(f"--metric must be a dotted key such as {DEFAULT_METRIC}, got {metric!r}")
    parts = metric.split(".")
    if parts[0] in OPEN_SECTIONS and len(parts) == 2 and parts[1]:
        return metric
    node = METRICS
    for i, p in enumerate(parts):
        if isinstance(node, dict) and p in node:
            node = node[p]
        elif isinstance(node, tuple) and p in node and i == len(parts) - 1:
            return metric
        else:
            break
    known = [f"{s}.{k}" for s, ks in METRICS.items() if isinstance(ks, tuple) for k in ks]
    raise ValueError(f"unknown --metric {metric!r}: a number of the record such as {DEFAULT_METRIC}, "
                     f"latency.malloc.p99, memory.peak_growth_bytes, counters.NAME (known: "
                     f"{', '.join(known)}, latency.KIND.STAT)")


def metric_of(rec: dict, metric: str):
    """The value of ``metric`` in ``rec`` (None where the record has none, e.g. cycles/op
    without operations; 0 for a counter this backend or workload does not keep)."""
    node = rec
    for p in metric.split("."):
        if not isinstance(node, dict) or p not in node:
            if metric.split(".")[0] in OPEN_SECTIONS:
                return 0
            raise ValueError(f"--metric {metric!r}: the records have no such key")
        node = node[p]
    if node is not None and (isinstance(node, bool) or not isinstance(node, (int, float))):
        raise ValueError(f"--metric {metric!r} is not a number ({node!r})")
    return node


def check_records(records: list, metric: str) -> None:
    """A counter metric must be kept by at least one of the runs (else it is a typo)."""
    section, _, name = metric.partition(".")
    if section in OPEN_SECTIONS and records and not any(name in r.get(section, {}) for r in records):
        known = sorted({k for r in records for k in r.get(section, {})})
        raise ValueError(f"--metric {metric!r}: no run has {section} {name!r} (they have: {', '.join(known) or 'none'})")
    for r in records:
        metric_of(r, metric)


def _mean(values: list):
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _group(records: list, metric: str) -> dict:
    """{(workload, point as a tuple): {backend: [metric per seed]}} in grid order."""
    groups: dict = {}
    for r in records:
        w, b = labels(r)
        cell = groups.setdefault((w, tuple(r["point"].items())), {})
        cell.setdefault(b, []).append(metric_of(r, metric))
    return groups


def ratio(a, b):
    """a / b, None when either is missing or b is 0."""
    if a is None or b is None or not b:
        return None
    return a / b


def ratio_points(records: list, a: str, b: str, metric: str = DEFAULT_METRIC) -> list:
    """``[{"point", "value"}]`` (with ``"workload"`` when the records have several), value =
    mean over seeds of metric(A) / mean over seeds of metric(B) at that point."""
    groups = _group(records, metric)
    several = len({w for w, _ in groups}) > 1
    out = []
    for (w, point), cell in groups.items():
        if a not in cell or b not in cell:
            raise ValueError(f"--ratio {a}/{b}: no runs of {a if a not in cell else b} at {_show(dict(point))}")
        entry = {"point": dict(point)}
        if several:
            entry["workload"] = w
        entry["value"] = ratio(_mean(cell[a]), _mean(cell[b]))
        out.append(entry)
    return out


def _side(r: float) -> bool:
    return r >= 1


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def crossovers(points: list, keys) -> list:
    """Where the ratio crosses 1 along each key of ``keys``, the other keys (and the workload)
    fixed: ``[{"key", "value", "between": [p, q], "at": {other keys}}]`` (with "workload" when the
    points have one), ``value`` interpolated linearly between the adjacent values p < q of the
    key whose ratios lie on different sides of 1 (a ratio of exactly 1 counts as A's side).
    Keys with values that are not numbers, and points without a ratio, are skipped."""
    out = []
    for key in keys:
        lines: dict = {}
        for e in points:
            x = e["point"].get(key)
            if not _number(x) or e["value"] is None:
                continue
            fixed = tuple((k, v) for k, v in e["point"].items() if k != key)
            lines.setdefault((e.get("workload"), fixed), []).append((x, e["value"]))
        for (w, fixed), line in lines.items():
            line.sort(key=lambda t: t[0])
            for (p, rp), (q, rq) in zip(line, line[1:]):
                if _side(rp) == _side(rq):
                    continue
                x = p + (1 - rp) * (q - p) / (rq - rp)
                entry = {"key": key, "value": x, "between": [p, q], "at": dict(fixed)}
                if w is not None:
                    entry["workload"] = w
                out.append(entry)
    return out


def parse_ratio(text: str, backends) -> tuple:
    a, sep, b = str(text).partition("/")
    a, b = a.strip(), b.strip()
    if not sep or not a or not b:
        raise ValueError(f"--ratio expects A/B, two backend names, got {text!r}")
    for name in (a, b):
        if name not in backends:
            raise ValueError(f"--ratio {text}: {name!r} is not one of --backends ({', '.join(backends)})")
    if a == b:
        raise ValueError(f"--ratio {text}: a backend over itself")
    return a, b


# --- output ---------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 10 else f"{v:,.1f}"
    return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)


def describe_crossovers(xs: list, of: str) -> str:
    """A line per crossover (one line when there is none)."""
    if not xs:
        return f"no crossover: {of} does not cross 1 in the range swept"
    lines = []
    for x in xs:
        where = ", ".join(f"{k}={v}" for k, v in x["at"].items())
        wl = f"{x['workload']}, " if "workload" in x else ""
        lines.append(f"crossover: {of} = 1 at {x['key']} = {x['value']:.6g} (between {x['between'][0]} and "
                     f"{x['between'][1]}" + (f"; {wl}{where}" if where or wl else "") + ")")
    return "\n".join(lines)


def sweep_table(records: list, keys: list, metric: str, ratio_of: tuple | None) -> str:
    """One row per (workload, point): the metric per backend (mean over seeds, ±stdev), the
    ratio (A/B, or each backend over the first), and the crossover(s) under it."""
    groups = _group(records, metric)
    backends = list(dict.fromkeys(labels(r)[1] for r in records))
    several = len({w for w, _ in groups}) > 1
    headers = (["workload"] if several else []) + list(keys) + backends
    if ratio_of:
        headers.append(f"{ratio_of[0]}/{ratio_of[1]}")
    else:
        headers += [f"{b}/{backends[0]}" for b in backends[1:]]
    rows = []
    for (w, point), cell in groups.items():
        row = ([w] if several else []) + [str(v) for _, v in point]
        for b in backends:
            vals = [v for v in cell.get(b, []) if v is not None]
            m = _mean(vals)
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            row.append(_fmt(m) + (f" ±{sd:.2g}" if sd else ""))
        pairs = [ratio_of] if ratio_of else [(b, backends[0]) for b in backends[1:]]
        for a, b in pairs:
            r = ratio(_mean(cell.get(a, [])), _mean(cell.get(b, [])))
            row.append("-" if r is None else f"{r:.3f}")
        rows.append(row)
    runs = max(len(v) for cell in groups.values() for v in cell.values())
    out = tabulate(rows, headers=headers, disable_numparse=True) + "\n\n"
    if ratio_of:
        of = f"{ratio_of[0]}/{ratio_of[1]}"
        out += describe_crossovers(crossovers(ratio_points(records, *ratio_of, metric), keys), of) + "\n"
    out += (f"per backend: {metric}, measured phase only, " +
            (f"mean ±stdev over {runs} seeds" if runs > 1 else "one seed per point") +
            "; a ratio is of the means\n")
    return out


def sweep_output(records: list, keys: list, metric: str, ratio_of: tuple | None, fmt: str) -> str:
    from kalloc.export import render, to_json
    if fmt == "json" and ratio_of:
        pts = ratio_points(records, *ratio_of, metric)
        return to_json({"records": records, "ratio": {"of": f"{ratio_of[0]}/{ratio_of[1]}", "metric": metric,
                                                      "points": pts, "crossover": crossovers(pts, keys)}})
    return render(records, fmt, lambda rs: sweep_table(rs, keys, metric, ratio_of))


def _axis(values: list):
    """x positions for values of a key: the values when numbers, else their indices."""
    if all(_number(v) for v in values):
        return list(values), None
    return list(range(len(values))), [str(v) for v in values]


def plot_sweep(records: list, keys: list, metric: str, ratio_of: tuple | None, path: str) -> None:
    """One line per backend (or the ratio, with ``ratio_of``) against the first varied key;
    the other keys and the workloads each get lines of their own."""
    from kalloc.plot import _pyplot, _save
    plt = _pyplot()
    first = keys[0]
    groups = _group(records, metric)
    lines: dict = {}
    backends = list(dict.fromkeys(labels(r)[1] for r in records))
    for (w, point), cell in groups.items():
        pt = dict(point)
        rest = ", ".join(f"{k}={v}" for k, v in pt.items() if k != first)
        label = " ".join(s for s in (w if len({g[0] for g in groups}) > 1 else "", rest) if s)
        if ratio_of:
            y = ratio(_mean(cell.get(ratio_of[0], [])), _mean(cell.get(ratio_of[1], [])))
            lines.setdefault(f"{ratio_of[0]}/{ratio_of[1]} {label}".strip(), []).append((pt[first], y))
        else:
            for b in backends:
                lines.setdefault(f"{b} {label}".strip(), []).append((pt[first], _mean(cell.get(b, []))))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ticks = None
    for label, pts in lines.items():
        xs, ticks = _axis([p[0] for p in pts])
        ax.plot(xs, [p[1] for p in pts], marker="o", label=label)
    if ticks:
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels(ticks)
    if ratio_of:
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        for x in crossovers(ratio_points(records, *ratio_of, metric), [first]):
            ax.plot([x["value"]], [1.0], marker="x", color="black")        # where a line crosses 1
        ax.set_ylabel(f"{ratio_of[0]}/{ratio_of[1]} of {metric}")
    else:
        ax.set_ylabel(metric)
    ax.set_xlabel(first)
    ax.legend(fontsize="small")
    _save(fig, path)


# --- sensitivity ------------------------------------------------------------------------------------

def price_ranges(ranges=None) -> dict:
    """``kalloc.costs.RANGES`` (or ``ranges``), checked: {price: (low, high)}, integers."""
    if ranges is None:
        ranges = _costs.RANGES
    fields = {f.name for f in attrs.fields(CostModel)}
    out = {}
    for price, span in ranges.items():
        if price not in fields:
            raise ValueError(f"RANGES: unknown price {price!r}")
        try:
            low, high = span
        except (TypeError, ValueError):
            raise ValueError(f"RANGES[{price!r}] must be (low, high), got {span!r}") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (low, high)) or low > high:
            raise ValueError(f"RANGES[{price!r}] must be integers 0 <= low <= high, got {span!r}")
        out[price] = (low, high)
    return out


def _models(nominal: CostModel, spans: dict) -> tuple:
    """The distinct cost models of a sensitivity run, the nominal first, and {(price, value):
    the index of its model} (a low or high equal to the nominal value reuses the nominal runs)."""
    models, at = [nominal], {}
    for price, (low, high) in spans.items():
        for v in (low, high):
            m = attrs.evolve(nominal, **{price: v})
            if m not in models:
                models.append(m)
            at[(price, v)] = models.index(m)
    return models, at


def sensitivity_runs(spans: dict, costs: dict, nseeds: int = 1) -> int:
    """How many runs ``sensitivity`` makes (for a progress bar)."""
    return 2 * nseeds * len(_models(CostModel.from_config(dict(costs)), spans)[0])


def _flips(lo, nom, hi) -> bool:
    if lo is None or nom is None or hi is None:
        return False
    return _side(lo) != _side(hi) or _side(lo) != _side(nom) or _side(hi) != _side(nom)


def sensitivity(workload: str, a: str, b: str, ncpus: int = 2, metric: str = DEFAULT_METRIC, *, seeds=(0,),
                physmem="64M", arch="i386", options=None, params=None, costs=None, warmup=None, ranges=None,
                jobs: int = 1, executor: str = "local", scheduler=None, progress=None, variants=None) -> list:
    """The one-at-a-time sensitivity of metric(a) / metric(b) to every price of the cost
    model: each price at its RANGES low and high, the others at the configured model's
    (``costs``: preset and prices; the nominal is that model's value).  Returns
    ``[{price, low, nominal, high, value_low, value_nominal, value_high, swing, flips}]``
    sorted by swing = |value_high - value_low|, largest first (ties in RANGES order).
    ``options``: {backend: {...}}; ``params``: the workload's; ``variants``: as sweep_specs's
    (``a``, ``b`` and the keys of ``options`` are then labels)."""
    check_metric(metric)
    spans = price_ranges(ranges)
    costs = dict(costs or {})
    nominal = CostModel.from_config(costs)
    options, params = options or {}, dict(params or {})
    name = plugin_names(variants)
    for be in (a, b):
        resolve_options(plugins.backend_class(name(be)), options.get(be, {}))
    resolve_params(plugins.workload_class(name(workload)), params)
    models, at = _models(nominal, spans)
    specs = [RunSpec(name(be), name(workload), ncpus, s, physmem, arch, dict(options.get(be, {})), params,
                     {**costs, **attrs.asdict(m)}, warmup, be, workload)
             for m in models for s in seeds for be in (a, b)]
    for s in specs[:2]:
        _check("sensitivity", s.backend, s.workload, ncpus, s.options, s.params, s.costs)
    records = run_grid(specs, jobs, progress, executor, scheduler)
    check_records(records, metric)
    per = 2 * len(seeds)
    value = []
    for i in range(len(models)):
        rs = records[i * per:(i + 1) * per]
        value.append(ratio(_mean([metric_of(r, metric) for r in rs if r["variant"] == a]),
                           _mean([metric_of(r, metric) for r in rs if r["variant"] == b])))
    rows = []
    for price, (low, high) in spans.items():
        vl, vn, vh = value[at[(price, low)]], value[0], value[at[(price, high)]]
        swing = abs(vh - vl) if vl is not None and vh is not None else 0.0
        rows.append({"price": price, "low": low, "nominal": getattr(nominal, price), "high": high,
                     "value_low": vl, "value_nominal": vn, "value_high": vh, "swing": swing,
                     "flips": _flips(vl, vn, vh)})
    rows.sort(key=lambda r: -r["swing"])
    return rows


def tornado_table(rows: list, of: str, metric: str, width: int = 40) -> str:
    """The rows as a tornado: per price a bar from the ratio at its low to the ratio at its
    high ('<' the low price's end, '>' the high's), '|' the nominal, ':' where the ratio is 1."""
    vals = [v for r in rows for v in (r["value_low"], r["value_high"], r["value_nominal"]) if v is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    span = (hi - lo) or 1.0

    def col(v):
        return min(width - 1, max(0, round((v - lo) / span * (width - 1))))

    out = []
    for r in rows:
        bar = [" "] * width
        if lo <= 1 <= hi:
            bar[col(1.0)] = ":"
        vl, vh, vn = r["value_low"], r["value_high"], r["value_nominal"]
        if vl is not None and vh is not None:
            c1, c2 = sorted((col(vl), col(vh)))
            for c in range(c1, c2 + 1):
                bar[c] = "="
            bar[col(vl)], bar[col(vh)] = "<", ">"
        if vn is not None:
            bar[col(vn)] = "|"
        out.append([r["price"], f"{r['low']:,}", f"{r['nominal']:,}" if "nominal" in r else "-", f"{r['high']:,}",
                    _fmt(vl), _fmt(vn), _fmt(vh), f"{r['swing']:.4f}", "yes" if r["flips"] else "",
                    "[" + "".join(bar) + "]"])
    headers = ["price", "low", "nominal", "high", "at low", "at nominal", "at high", "swing", "flips",
               f"{_fmt(lo)} .. {_fmt(hi)}"]
    return (tabulate(out, headers=headers, disable_numparse=True) +
            f"\n\n{of} of {metric} with each price at its low and high (the others nominal), largest swing "
            f"first; bar: < at the low price, > at the high, | nominal, : a ratio of 1; flips: the ratio "
            f"crosses 1 within the range\n")


def plot_tornado(rows: list, of: str, metric: str, path: str) -> None:
    """A tornado chart: per price, bars from the nominal ratio to the ratios at its low
    and high; the largest swing on top."""
    from kalloc.plot import _pyplot, _save
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, max(3, 0.35 * len(rows) + 1.5)))
    ys = list(range(len(rows)))[::-1]
    nominal = next((r["value_nominal"] for r in rows if r["value_nominal"] is not None), None)
    for y, r in zip(ys, rows):
        for v, colour, label in ((r["value_low"], "tab:blue", "low price"), (r["value_high"], "tab:orange", "high price")):
            if v is not None and nominal is not None:
                ax.barh(y, v - nominal, left=nominal, color=colour, label=label if y == ys[0] else None)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["price"] for r in rows])
    if nominal is not None:
        ax.axvline(nominal, color="black", linewidth=1)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel(f"{of} of {metric}")
    ax.legend(fontsize="small")
    _save(fig, path)


# --- the commands (kalloc.cli parses the arguments and the file) --------------------------------------

def _section(args) -> dict:
    from kalloc.config import load_toml
    file = load_toml(args.config) if getattr(args, "config", None) else {}
    return check_section(file.get("sweep", {}))


def sweep_command(args, cfg, progress) -> tuple:
    """The sweep's records, and its view (kalloc.export.present) without the format."""
    from kalloc.experiment import untimed
    section = _section(args)
    name = plugin_names(cfg.names)
    pairs = vary_from(args.vary, section, tuple(dict.fromkeys(map(name, cfg.backends))),
                      tuple(dict.fromkeys(map(name, cfg.workloads))))
    keys = [k for k, _ in pairs]
    metric = check_metric(args.metric or section.get("metric") or DEFAULT_METRIC)
    given = args.ratio or section.get("ratio")
    ratio_of = parse_ratio(given, cfg.backends) if given else None
    seeds = [cfg.seed + i for i in range(cfg.repeat)]
    grid = sweep_specs(pairs, cfg.backends, cfg.workloads, cfg.ncpus[0], seeds, physmem=cfg.physmem,
                       arch=cfg.arch, options=cfg.options, params=cfg.params, costs=cfg.costs, warmup=cfg.warmup,
                       variants=cfg.names)
    records = untimed(run_sweep(grid, cfg.jobs, progress(len(distinct_specs(grid))), cfg.executor, cfg.scheduler),
                      getattr(args, "timing", False))
    check_records(records, metric)
    if cfg.plot:
        plot_sweep(records, keys, metric, ratio_of, cfg.plot)
    return records, {"command": "sweep", "keys": keys, "metric": metric, "ratio": ratio_of}


def sensitivity_command(args, cfg, progress) -> str:
    from kalloc.export import render
    section = _section(args)
    if len(cfg.backends) != 2:
        raise ValueError(f"sensitivity takes two backends, A,B (the ratio A/B), not {len(cfg.backends)} "
                         f"({', '.join(cfg.backends)})")
    a, b = cfg.backends
    metric = check_metric(args.metric or section.get("metric") or DEFAULT_METRIC)
    spans = price_ranges()
    seeds = [cfg.seed + i for i in range(cfg.repeat)]
    rows = sensitivity(cfg.workloads[0], a, b, cfg.ncpus[0], metric, seeds=seeds, physmem=cfg.physmem,
                       arch=cfg.arch, options=cfg.options, params=cfg.params_for(cfg.workloads[0]),
                       costs=cfg.costs, warmup=cfg.warmup, ranges=spans, jobs=cfg.jobs, executor=cfg.executor,
                       scheduler=cfg.scheduler, progress=progress(sensitivity_runs(spans, cfg.costs, len(seeds))),
                       variants=cfg.names)
    if cfg.plot:
        plot_tornado(rows, f"{a}/{b}", metric, cfg.plot)
    return render(rows, cfg.format, lambda rs: tornado_table(rs, f"{a}/{b}", metric))
