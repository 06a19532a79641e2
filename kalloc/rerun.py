"""``kalloc rerun FILE``: run the records of a JSON file again and say which come out the same.

A record carries what it takes to rerun it (kalloc.provenance): the backend and workload
with their variants, CPUs, seed, machine, the options, parameters and prices resolved, the
warm-up, and for a replayed trace its path and sha256.  Each record is rerun alone and
compared, as JSON text, with the one in the file, ``wall_seconds`` aside: identical or not,
with the keys that differ.  A file that holds no records, or a record without what a rerun
needs (a summary row of ``kalloc scale``, a record from before provenance), is bad input;
a trace that is gone or has changed is a difference.
"""

from __future__ import annotations

import json
import os

from kalloc.export import to_json
from kalloc.harness import RunSpec, run_one
from kalloc.provenance import TRACE_PREFIX, sha256
from kalloc.replay.run import replay_backends

NEEDED = ("backend", "variant", "workload", "workload_variant", "ncpus", "seed", "physmem", "arch", "options",
          "params", "costs", "run", "provenance")


def load_records(path: str) -> list:
    """The records of a JSON file: a list of them, or a sweep's {"records": [...]}."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: holds no records (the JSON of kalloc run, compare, replay or sweep)")
    for i, r in enumerate(records, 1):
        missing = [k for k in NEEDED if k not in r]
        if missing:
            raise ValueError(f"{path}: record {i} lacks {', '.join(missing)}: it is not a run record of this "
                             f"kalloc (kalloc scale prints summaries; save runs with --save and kalloc export them)")
        if _trace(r) == "-":
            raise ValueError(f"{path}: record {i} replayed standard input, which cannot be read again")
    return records


def _trace(r: dict) -> str | None:
    return r["workload"][len(TRACE_PREFIX):] if r["workload"].startswith(TRACE_PREFIX) else None


def spec_of(r: dict) -> RunSpec:
    return RunSpec(r["backend"], r["workload"], r["ncpus"], r["seed"], r["physmem"], r["arch"], dict(r["options"]),
                   dict(r["params"]), dict(r["costs"]), r["run"]["warmup"], r["variant"], r["workload_variant"])


def rerun_one(r: dict) -> tuple:
    """(the new record or None, why it could not be made)."""
    path = _trace(r)
    if path is None:
        new = run_one(spec_of(r))
    elif not os.path.exists(path):
        return None, f"the trace {path} is gone"
    elif sha256(path) != r.get("trace", {}).get("sha256"):
        return None, f"the trace {path} has changed (its sha256 is not the recorded one)"
    else:
        s = spec_of(r)
        new = replay_backends(path, [(s.backend, s.options, s.variant)], s.ncpus, s.physmem, s.arch, s.costs,
                              s.seed, warmup=s.warmup)[0]
    if "point" in r:
        new = {"point": r["point"], **new}
    return new, None


def _text(r: dict) -> str:
    return to_json({**r, "wall_seconds": None})


def differences(old, new, prefix: str = "") -> list:
    """The dotted keys whose values differ (a list is compared whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [k for key in dict.fromkeys([*old, *new]) for k in differences(old.get(key), new.get(key),
                                                                              f"{prefix}{key}.")]
    return [] if old == new else [prefix[:-1]]


def describe(i: int, r: dict) -> str:
    return f"record {i} ({r['variant']} on {r['workload_variant']}, {r['ncpus']} CPUs, seed {r['seed']})"


def rerun(path: str, say) -> bool:
    """Rerun every record of the file, ``say``-ing a line each; True if all are identical."""
    records = load_records(path)
    same = True
    for i, old in enumerate(records, 1):
        new, why = rerun_one(old)
        if new is not None and _text(new) == _text(old):
            say(f"{describe(i, old)}: identical")
            continue
        same = False
        if why is None:
            keys = differences(json.loads(_text(old)), json.loads(_text(new)))
            why = "differs in " + ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
        say(f"{describe(i, old)}: {why}")
    return same
