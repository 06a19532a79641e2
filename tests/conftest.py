"""Fixtures shared by test modules that add kalloc plugins of their own (broken backends,
buggy workloads) to the process-wide plugin manager for their tests only."""

import pytest

from kalloc import plugins


@pytest.fixture(scope="module")
def register_plugin():
    """register(plugin, name): a plugin object for this module's tests, unregistered after them."""
    pm = plugins.plugin_manager()
    names = []
    yield lambda plugin, name: names.append(pm.register(plugin, name=name))
    for name in names:
        pm.unregister(name=name)
