"""The bundled driver workloads, registered through the same hook third parties use."""

from kalloc.hookspecs import hookimpl
from kalloc_plugins.workloads.tty import Tty


@hookimpl
def kalloc_workloads():
    return [Tty]
