"""The plugin manager: built-in and third-party backends and workloads, one way in.

Every plugin, built in or not, is a module (or object) with ``@hookimpl`` functions,
registered under the ``kalloc`` entry-point group of its package's metadata.  kalloc's
own backends and workloads are listed in kalloc's pyproject.toml exactly as a third
party would list theirs.  ``DEFAULT_PLUGINS`` names the same modules so that a source
checkout that was not pip-installed still finds them; a module is never registered
twice.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

import pluggy

from kalloc import hookspecs
from kalloc.errors import KallocError

DEFAULT_PLUGINS = (
    "kalloc.backends.bump",
    "kalloc.backends.kmem_map",
    "kalloc.backends.slab",
    "kalloc_plugins.workloads",
)


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("kalloc")
    pm.add_hookspecs(hookspecs)
    try:
        pm.load_setuptools_entrypoints("kalloc")
    except Exception as e:  # a broken plugin package: say which, in one line
        raise KallocError(f"a kalloc plugin failed to load: {type(e).__name__}: {e}") from e
    loaded = {getattr(p, "__name__", None) for p in pm.get_plugins()}
    for name in DEFAULT_PLUGINS:
        if name not in loaded:
            try:
                mod = importlib.import_module(name)
            except ModuleNotFoundError as e:
                if e.name != name:  # a real import error inside the plugin
                    raise
                continue
            pm.register(mod, name=name)
    pm.check_pending()
    return pm


def _origin(pm: pluggy.PluginManager, plugin) -> str:
    """The distribution that provides a plugin module (for `kalloc backends`)."""
    name = _distributions(pm).get(id(plugin))
    return name if name is not None else getattr(plugin, "__name__", "?").split(".")[0]


@lru_cache(maxsize=1)
def _distributions(pm: pluggy.PluginManager) -> dict[int, str]:
    """id(plugin) -> distribution name, for the plugins loaded from entry points (they
    are all loaded when the manager is made).  Read once: each name parses the
    package's metadata, which took a tenth of a second of every command's start-up."""
    return {id(p): dist.project_name if hasattr(dist, "project_name") else dist.metadata["name"]
            for p, dist in pm.list_plugin_distinfo()}


def _collect(hookname: str) -> dict[str, tuple[type, str]]:
    """NAME -> (class, origin) over every plugin implementing the hook."""
    pm = plugin_manager()
    found: dict[str, tuple[type, str]] = {}
    for impl in getattr(pm.hook, hookname).get_hookimpls():
        for cls in impl.function() or ():
            name = getattr(cls, "NAME", None)
            if not name:
                raise TypeError(f"{impl.plugin_name}: {cls!r} from {hookname} has no NAME")
            if name in found and found[name][0] is not cls:
                raise ValueError(f"two plugins define {hookname[7:-1]} {name!r}: "
                                 f"{found[name][1]} and {impl.plugin_name}")
            found[name] = (cls, _origin(pm, impl.plugin))
    return dict(sorted(found.items()))


def backends() -> dict[str, tuple[type, str]]:
    return _collect("kalloc_backends")


def workloads() -> dict[str, tuple[type, str]]:
    return _collect("kalloc_workloads")


def _lookup(kind: str, table: dict, name: str) -> type:
    try:
        return table[name][0]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r} (known: {', '.join(table) or 'none'})") from None


def backend_class(name: str) -> type:
    return _lookup("backend", backends(), name)


def workload_class(name: str) -> type:
    return _lookup("workload", workloads(), name)
