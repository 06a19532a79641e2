"""kalloc: simulate kernel memory allocators faithfully and compare them.

The public names live here; see the README and docs/ for the tour.
"""

from kalloc.errors import (BadFree, Deadlock, DoubleFree, KallocError, KernelPanic, MemoryCorruption,
                           PageFault, Redzone, UseAfterFree, WildFree, WrongType)
from kalloc.flags import M_NOWAIT, M_NULLOK, M_USE_RESERVE, M_WAITOK, M_ZERO, MallocFlags
from kalloc.hookspecs import hookimpl
from kalloc.machine import parse_size
from kalloc.malloc import Kernel, MallocType, boot

__version__ = "0.1.0"

__all__ = [
    "BadFree", "Deadlock", "DoubleFree", "KallocError", "Kernel", "KernelPanic", "M_NOWAIT",
    "M_NULLOK", "M_USE_RESERVE", "M_WAITOK", "M_ZERO", "MallocFlags", "MallocType", "MemoryCorruption",
    "PageFault", "Redzone", "UseAfterFree", "WildFree", "WrongType", "boot", "hookimpl", "parse_size",
]
