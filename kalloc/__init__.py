"""kalloc: simulate kernel memory allocators faithfully and compare them.

The public names live here; see the README and docs/ for the tour.  ``kalloc.experiment``
(the notebook API: run, compare, scale, replay) and ``kalloc.to_dataframe`` are imported on
first use: they bring in the harness, which ``import kalloc`` alone does not need.
"""

from kalloc.errors import (BadFree, Deadlock, DoubleFree, KallocError, KernelPanic, MemoryCorruption,
                           PageFault, Redzone, UseAfterFree, WildFree, WrongType)
from kalloc.flags import M_NOWAIT, M_NULLOK, M_USE_RESERVE, M_WAITOK, M_ZERO, MallocFlags
from kalloc.hookspecs import hookimpl
from kalloc.machine import parse_size
from kalloc.malloc import Kernel, MallocType, boot

__version__ = "0.1.0"



def __getattr__(name: str):
    if name == "experiment":
        import kalloc.experiment
        return kalloc.experiment
    if name == "to_dataframe":
        from kalloc.frames import to_dataframe
        return to_dataframe
    raise AttributeError(f"module 'kalloc' has no attribute {name!r}")


__all__ = [
    "BadFree", "Deadlock", "DoubleFree", "KallocError", "Kernel", "KernelPanic", "M_NOWAIT",
    "M_NULLOK", "M_USE_RESERVE", "M_WAITOK", "M_ZERO", "MallocFlags", "MallocType", "MemoryCorruption",
    "PageFault", "Redzone", "UseAfterFree", "WildFree", "WrongType", "boot", "experiment", "hookimpl", "parse_size",
    "to_dataframe",
]
