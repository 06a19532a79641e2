"""pytest plugin (entry point ``pytest11``): the conformance battery for any backend.

A backend author runs, from their own package::

    pytest --kalloc-backend mypkg.mybackend:MyBackend      # a class, imported and registered
    pytest --kalloc-backend slab --kalloc-backend kmem_map  # or backends already registered

and gets kalloc's battery (kalloc/conformance_suite.py) added to their session, once per
named backend (kalloc's own tests/test_conformance.py imports it for the built-in ones): the malloc(9) API contract, flag semantics, alignment, M_ZERO, accounting,
bad input, and the hypothesis state machine of kalloc.conformance.  ``--kalloc-ncpus``
(default 4) and ``--kalloc-examples`` (default 100 state-machine runs of 50 steps) tune it.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

SUITE = Path(__file__).with_name("conformance_suite.py")


def pytest_addoption(parser):
    g = parser.getgroup("kalloc", "kalloc backend conformance")
    g.addoption("--kalloc-backend", action="append", default=[], metavar="NAME|module:Class",
                help="run kalloc's conformance battery on this backend (repeatable)")
    g.addoption("--kalloc-ncpus", type=int, default=4, help="simulated CPUs for the battery")
    g.addoption("--kalloc-examples", type=int, default=100, help="state-machine runs per backend")


def _register(spec: str) -> str:
    """A backend name the kernel can boot: registered names pass, module:Class is loaded."""
    from kalloc import hookimpl, plugins
    if ":" not in spec:
        try:
            plugins.backend_class(spec)
        except ValueError as e:
            raise pytest.UsageError(f"--kalloc-backend: {e}") from None
        return spec
    module, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as e:
        raise pytest.UsageError(f"--kalloc-backend {spec}: cannot load it: {e}") from None

    class _Plugin:
        @hookimpl
        def kalloc_backends(self):
            return [cls]

    pm = plugins.plugin_manager()
    if cls.NAME not in plugins.backends():
        pm.register(_Plugin(), name=f"kalloc-backend-{cls.NAME}")
    return cls.NAME


def pytest_configure(config):
    specs = config.getoption("kalloc_backend")
    if specs:
        config.kalloc_backends = [_register(s) for s in specs]
        config.args.append(str(SUITE))


def pytest_generate_tests(metafunc):
    """The named backends, or, when a module imports the battery without the option,
    every backend kalloc itself ships."""
    if "kalloc_backend" in metafunc.fixturenames:
        from kalloc import plugins
        names = getattr(metafunc.config, "kalloc_backends", None) or [
            n for n, (_, origin) in plugins.backends().items() if origin == "kalloc"]
        metafunc.parametrize("kalloc_backend", names)
