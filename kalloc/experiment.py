"""The notebook API, and what the CLI's commands run: each command's runs from its settings.

    import kalloc
    recs = kalloc.experiment.compare(backends="slab,slab[remote_free=passive],kmem_map",
                                     workloads=["tty", "net"], ncpus=[1, 2, 4], repeat=2)
    df = kalloc.to_dataframe(recs)

Two layers.  ``run``, ``compare``, ``scale`` and ``replay`` take the CLI's options as keyword
arguments, spelled as the keys of a TOML file (docs/configuration.md): ``backends`` (a list or
``"a,b"``, variants included), ``variants`` (the ``[[variant]]`` tables), ``workloads``,
``ncpus``, ``physmem``, ``seed``, ``repeat``, ``jobs``, ``executor``, ``scheduler``, ``arch``,
``options``, ``params``, ``costs`` (dicts, nested or dotted as --set takes them),
``warmup``, ``trace`` (compare); ``timing=True`` fills ``wall_seconds``, which is otherwise
None as on the CLI, so that the same arguments give the same records.  A bad argument is the
ValueError the CLI prints; a section for a backend or workload not selected is a warning.
They return the records (docs/comparing.md, "The JSON record").

Under them, ``run_records``, ``grid_records``, ``compare_records`` and ``replay_records``
take a built ``kalloc.config.Config``: the CLI builds one from its arguments and its file and
calls these, so a command and its keyword call run the same thing.
"""

from __future__ import annotations

import warnings

from kalloc.config import TOP_KEYS, build
from kalloc.executors import run_grid
from kalloc.harness import RunSpec, run_one, specs_for
from kalloc.replay.run import check_trace, replay_backends

# Keyword arguments that are not TOML keys, and the TOML keys that are no keyword argument.
_RENAMED = {"variants": "variant"}
_NOT_ARGUMENTS = {"format", "output", "plot", "sweep", "run", "variant"}
ARGUMENTS = sorted((TOP_KEYS - _NOT_ARGUMENTS) | set(_RENAMED) | {"warmup", "timing"})


def configure(kwargs: dict, default_ncpus=(1,), single: tuple = (), allowed=None):
    """(Config, timing) from keyword arguments; ``allowed``: the ones this command takes."""
    allowed = set(ARGUMENTS if allowed is None else allowed)
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(allowed))})")
    file = {_RENAMED.get(k, k): v for k, v in kwargs.items() if k not in ("warmup", "timing")}
    if kwargs.get("warmup") is not None:
        file["run"] = {"warmup": kwargs["warmup"]}
    cfg = build(file, {}, default_ncpus, single)
    for note in cfg.notes:
        warnings.warn(note, stacklevel=3)
    if cfg.trace:
        check_trace(cfg.trace)
    return cfg, bool(kwargs.get("timing", False))


def untimed(records: list, timing: bool) -> list:
    """wall_seconds is the one field that is not a function of the configuration: None
    unless ``timing``."""
    if not timing:
        for r in records:
            r["wall_seconds"] = None
    return records


def spec(cfg, backend: str, workload: str, ncpus: int, seed: int) -> RunSpec:
    """The run of backend and workload labels (variants) of ``cfg``."""
    return RunSpec(cfg.backend_of(backend), cfg.workload_of(workload), ncpus, seed, cfg.physmem, cfg.arch,
                   cfg.options_for(backend), cfg.params_for(workload), cfg.costs, cfg.warmup, backend, workload)


def run_records(cfg) -> list:
    """``kalloc run``: the one record of the first backend, workload and CPU count."""
    return [run_one(spec(cfg, cfg.backends[0], cfg.workloads[0], cfg.ncpus[0], cfg.seed))]


def grid_records(cfg, progress=None) -> list:
    """Every backend x workload x CPU count x seed (``kalloc compare`` and ``scale``)."""
    seeds = [cfg.seed + i for i in range(cfg.repeat)]
    specs = [spec(cfg, s.backend, s.workload, s.ncpus, s.seed)          # (labels, in grid order)
             for s in specs_for(cfg.backends, cfg.workloads, cfg.ncpus, seeds)]
    return run_grid(specs, cfg.jobs, progress(len(specs)) if progress else None, cfg.executor, cfg.scheduler)


def replay_records(cfg, path, ncpus: int | None, pipeline: bool | None = None, progress=None) -> list:
    """The trace at ``path`` replayed on every backend of ``cfg``, in one pass; ``ncpus``
    None: as many CPUs as the trace has."""
    runs = [(cfg.backend_of(b), cfg.options_for(b), b) for b in cfg.backends]
    return replay_backends(path, runs, ncpus, cfg.physmem, cfg.arch, cfg.costs, cfg.seed, progress, pipeline,
                           cfg.warmup or 0)


def compare_records(cfg, progress=None, replay_progress=None) -> list:
    """``kalloc compare``: the grid, then ``cfg.trace`` replayed beside it."""
    # The trace first: a missing or damaged one must not cost the grid's results.
    replays = replay_records(cfg, cfg.trace, None, progress=replay_progress) if cfg.trace else []
    return grid_records(cfg, progress) + replays


# --- the keyword API -----------------------------------------------------------------------------

def run(**kwargs) -> list:
    """One workload on one backend: ``run(backend="slab", workload="net", ncpus=4)``."""
    cfg, timing = configure(kwargs, single=("backends", "workloads", "ncpus"))
    return untimed(run_records(cfg), timing)


def compare(**kwargs) -> list:
    """Backends x workloads x CPU counts (default 1, 2, 4) x seeds, in the CLI's order."""
    cfg, timing = configure(kwargs, (1, 2, 4))
    return untimed(compare_records(cfg), timing)


def scale(**kwargs) -> list:
    """The records of a scaling grid (default 1, 2, 4, 8 CPUs); ``kalloc.export.scale_rows(
    kalloc.harness.summarize(records))`` gives the rows ``kalloc scale`` prints."""
    cfg, timing = configure(kwargs, (1, 2, 4, 8), allowed=set(ARGUMENTS) - {"trace"})
    return untimed(grid_records(cfg), timing)


def replay(trace, *, pipeline: bool | None = None, **kwargs) -> list:
    """The trace at ``trace`` on every backend (default slab, kmem_map), in one pass; ``ncpus``:
    one CPU count (default: the trace's)."""
    cfg, timing = configure(kwargs, single=("ncpus",),
                            allowed=set(ARGUMENTS) - {"trace", "workload", "workloads", "params", "repeat", "jobs",
                                                      "executor", "scheduler"})
    check_trace(trace)
    ncpus = cfg.ncpus[0] if kwargs.get("ncpus") is not None else None
    return untimed(replay_records(cfg, trace, ncpus, pipeline), timing)
