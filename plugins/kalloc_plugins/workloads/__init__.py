"""The bundled driver workloads, registered through the same hook third parties use."""

from kalloc.hookspecs import hookimpl
from kalloc_plugins.workloads.fs import Fs
from kalloc_plugins.workloads.isa import Isa
from kalloc_plugins.workloads.larson import Larson
from kalloc_plugins.workloads.net import Net
from kalloc_plugins.workloads.phases import Phases
from kalloc_plugins.workloads.prodcons import Prodcons
from kalloc_plugins.workloads.scsi import Scsi
from kalloc_plugins.workloads.tty import Tty


@hookimpl
def kalloc_workloads():
    return [Tty, Net, Fs, Scsi, Larson, Prodcons, Isa, Phases]
