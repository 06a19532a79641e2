"""Every kalloc hook, one docstring each.

pluggy sits beside the simulator, not in it: hooks *find* backends and workloads,
hand them configuration and carry events.  No hook is ever called per malloc/free;
``kalloc.boot`` binds the chosen backend's methods once.

Calls are keyword-only, so an implementation may take any subset of a hook's
arguments, and a hook may grow arguments without breaking plugins.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("kalloc")
hookimpl = pluggy.HookimplMarker("kalloc")

# --- discovery -----------------------------------------------------------------------


@hookspec
def kalloc_backends():
    """Return a list of backend classes (subclasses of kalloc.backends.base.Backend or
    classes with the same interface), each with a unique ``NAME``."""


@hookspec
def kalloc_workloads():
    """Return a list of workload classes (see kalloc.workload.Workload), each with a
    unique ``NAME``."""


# --- configuration -------------------------------------------------------------------


@hookspec
def kalloc_configure(config):
    """Called once with the frozen ``kalloc.config.Config`` before a command runs."""


# --- events --------------------------------------------------------------------------


@hookspec
def kalloc_boot(kernel):
    """A kernel has booted (its backend is bound); runs once per ``kalloc.boot``."""


@hookspec
def kalloc_run_end(record):
    """A harness run finished; ``record`` is its JSON-ready result dict."""
