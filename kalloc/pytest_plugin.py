"""pytest plugin (entry point ``pytest11``): the conformance battery for any backend.

A backend author runs, from their own package (``pip install 'kalloc[conformance]'``)::

    pytest --kalloc-backend mypkg.mybackend:MyBackend      # a class, imported and registered
    pytest --kalloc-backend slab --kalloc-backend kmem_map  # or backends already registered
    pytest --kalloc-backend slab --kalloc-option zone_cache=32 --kalloc-option slab.remote_free=passive

and gets kalloc's battery (kalloc/conformance_suite.py) added to their session, once per
named backend (kalloc's own tests/test_conformance.py imports it for the built-in ones).
``--kalloc-option`` takes what ``kalloc --set`` takes, with the same scoping (a bare key goes
to every named backend that declares it; ``name.key`` to one) and checks it at start-up.
``--kalloc-ncpus`` (default 4) and ``--kalloc-examples`` (default 100 state-machine runs of
50 steps) tune it.

The battery's tests are ids ``kalloc.conformance_suite::test_...[backend]`` (the options
given appended, ``[slab-zone_cache=32]``), so ``-k firstfit`` selects one backend's.

It leaves nothing in the directory it runs from (``_keep_cwd_clean``): the hypothesis runs
keep no example database, and hypothesis' cache goes to a temporary directory unless
``.hypothesis/`` is there already; a ``.benchmarks/`` directory that pytest-benchmark (when
installed) creates in every session is removed again if it is new and still empty.  pytest's own ``.pytest_cache/`` is pytest's business (``-p no:cacheprovider``).
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

SUITE = Path(__file__).with_name("conformance_suite.py")
SUITE_ID = "kalloc.conformance_suite"


def pytest_addoption(parser):
    g = parser.getgroup("kalloc", "kalloc backend conformance")
    g.addoption("--kalloc-backend", action="append", default=[], metavar="NAME|module:Class",
                help="run kalloc's conformance battery on this backend (repeatable)")
    g.addoption("--kalloc-option", action="append", default=[], metavar="[BACKEND.]KEY=VALUE",
                help="backend option for every kernel the battery boots, as kalloc --set takes it (repeatable)")
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


def _options(items: list, names: list) -> dict:
    """--kalloc-option values split per backend and checked as boot would check them."""
    from kalloc import plugins
    from kalloc.backends.base import COMMON_OPTIONS, resolve_options
    from kalloc.config import _split_scoped
    flat = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(f"--kalloc-option expects [backend.]key=value, got {item!r}")
        flat[key.strip()] = value.strip()       # a string: each Option converts it as --set's do
    classes = {n: plugins.backend_class(n) for n in names}
    try:
        out = _split_scoped(flat, tuple(names), {n: {**COMMON_OPTIONS, **c.OPTIONS} for n, c in classes.items()},
                            "option", "backend")
        for n, opts in out.items():
            resolve_options(classes[n], opts)
    except ValueError as e:
        raise pytest.UsageError(f"--kalloc-option: {e}") from None
    return out


@pytest.hookimpl(tryfirst=True)                  # before pytest-benchmark makes .benchmarks/
def pytest_configure(config):
    specs = config.getoption("kalloc_backend")
    if specs:
        try:
            import hypothesis  # noqa: F401
        except ImportError:
            raise pytest.UsageError("--kalloc-backend: the battery needs hypothesis: "
                                    "pip install 'kalloc[conformance]'") from None
        config.kalloc_backends = [_register(s) for s in specs]
        config.kalloc_options = _options(config.getoption("kalloc_option"), config.kalloc_backends)
        _keep_cwd_clean(config)
        config.args.append(str(SUITE))
    elif config.getoption("kalloc_option"):
        raise pytest.UsageError("--kalloc-option needs --kalloc-backend")


def _keep_cwd_clean(config) -> None:
    """Hypothesis keeps a cache (and, unless told not to, an example database) under
    ./.hypothesis: when that is not there yet, nor placed elsewhere by the user, it goes to a
    temporary directory for this session.  pytest-benchmark makes ./.benchmarks in every
    session: noted, to be removed at the end if it is new and empty."""
    import hypothesis.configuration
    if not (Path.cwd() / ".hypothesis").exists() and "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:
        config.kalloc_hypothesis_home = tempfile.mkdtemp(prefix="kalloc-conformance-")
        hypothesis.configuration.set_hypothesis_home_dir(config.kalloc_hypothesis_home)
    benchmarks = Path.cwd() / ".benchmarks"
    if not benchmarks.exists():
        config.kalloc_new_benchmarks = benchmarks


def pytest_unconfigure(config):
    home = getattr(config, "kalloc_hypothesis_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)
    benchmarks = getattr(config, "kalloc_new_benchmarks", None)
    if benchmarks is not None and benchmarks.is_dir() and not any(benchmarks.iterdir()):
        benchmarks.rmdir()


def pytest_pycollect_makemodule(module_path, parent):
    """The battery under its module's name, not under a path outside the user's rootdir
    (which pytest shows as a bare ``::test_...``)."""
    if module_path == SUITE:
        return pytest.Module.from_parent(parent, path=module_path, nodeid=SUITE_ID)
    return None


def pytest_generate_tests(metafunc):
    """The named backends, or, when a module imports the battery without the option,
    every backend kalloc itself ships; each test id names the backend and its options."""
    if "kalloc_backend" in metafunc.fixturenames:
        from kalloc import plugins
        names = getattr(metafunc.config, "kalloc_backends", None) or [
            n for n, (_, origin) in plugins.backends().items() if origin == "kalloc"]
        given = getattr(metafunc.config, "kalloc_options", {})
        metafunc.parametrize("kalloc_backend", names, ids=[
            "-".join([n, *(f"{k}={v}" for k, v in given.get(n, {}).items())]) for n in names])
