"""Provenance: what a record carries so that it can be rerun, and told apart from another's.

Every record (kalloc.harness.record) has, beside what ran, its settings resolved -- ``options``
with the backend's defaults, ``params`` with the workload's, ``costs`` with every price of
the cost model and its ``preset``, ``machine``, ``run.warmup`` -- and
``provenance: {"kalloc", "backend_dist", "workload_dist", "python"}``: the versions of the code
that made it (a distribution is ``[name, version]``; version None for a module that is not
an installed package).  A replayed trace's ``trace`` also has ``sha256``, of the file.

Nothing here reads a clock: the same configuration gives the same record, byte for byte, on
the same installation.  Dates belong to a saved run (kalloc.runsdb), not to its records.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
from functools import lru_cache

from kalloc import __version__, plugins

TRACE_PREFIX = "trace:"         # a replayed trace's workload name: trace:PATH


@lru_cache(maxsize=None)
def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def distribution(kind: str, name: str) -> list:
    """[distribution, version] of the plugin that provides backend or workload ``name``
    (``kind``); a replayed trace's workload is kalloc's own replayer."""
    if kind == "workload" and name.startswith(TRACE_PREFIX):
        return ["kalloc", __version__]
    table = plugins.backends() if kind == "backend" else plugins.workloads()
    origin = table[name][1]
    return [origin, _version(origin)]


def provenance(backend: str, workload: str) -> dict:
    return {"kalloc": __version__, "backend_dist": distribution("backend", backend),
            "workload_dist": distribution("workload", workload), "python": platform.python_version()}


def sha256(path) -> str | None:
    """The file's sha256 (None for standard input, which cannot be read again)."""
    if os.fspath(path) == "-":
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
