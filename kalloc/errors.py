"""What a simulated kernel can say when things go wrong.

A real kernel prints a panic message and stops; kalloc raises ``KernelPanic`` whose
``str()`` is that message, so a test or a report can show exactly what the 1993-2003
kernel would have printed.  Misuse that the original code did not check (a double free
that 4.8 would silently put on its free list twice, a free with the wrong malloc type)
is still caught, as a subclass of ``BadFree``, because a simulation that silently
corrupts itself answers nothing.  ``Deadlock`` is a simulated thread sleeping on
something that nothing can ever give it (the harness names who waits for what).
``WorkloadError`` is a workload's own bug, not the kernel's.
"""

from __future__ import annotations


class KallocError(Exception):
    """Base of every error the simulator raises on purpose.

    Every one pickles (runs cross process boundaries): it is rebuilt from its message and
    attributes without calling ``__init__``, whose arguments (PageFault's address) are
    not the message the default pickling passes back."""

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type, args: tuple, state: dict) -> KallocError:
    e = cls.__new__(cls, *args)          # BaseException.__new__ sets e.args
    e.__dict__.update(state)
    return e


class KernelPanic(KallocError):
    """The simulated kernel panicked; ``str(e)`` is the message it would print."""


class PageFault(KernelPanic):
    """A kernel-mode access to an unmapped virtual address."""

    def __init__(self, addr: int, what: str = "access"):
        self.addr = addr
        super().__init__(f"Fatal trap 12: page fault while in kernel mode: {what} of unmapped address {addr:#x}")


class BadFree(KernelPanic):
    """free() of something that is not a live allocation of this type on this backend."""

    def __init__(self, message: str, addr: int | None = None, site: str | None = None):
        self.addr = addr
        self.site = site
        super().__init__(message if site is None else f"{message} (allocated at {site})")


class DoubleFree(BadFree):
    """The address was allocated and has already been freed."""


class WildFree(BadFree):
    """The address was never returned by malloc (or is inside an allocation)."""


class WrongType(BadFree):
    """free() was given another malloc type than the one the memory was allocated with."""


class MemoryCorruption(KernelPanic):
    """Memory outside a live allocation was written or read (debug options catch these)."""

    def __init__(self, message: str, addr: int | None = None, site: str | None = None):
        self.addr = addr
        self.site = site
        super().__init__(message)


class Redzone(MemoryCorruption):
    """A guard byte before or after an allocation was overwritten (redzone=N)."""


class UseAfterFree(MemoryCorruption):
    """Freed memory was read or written (quarantine=N)."""


class Deadlock(KallocError):
    """A thread sleeps on a wait channel that nothing can ever wake."""

    def __init__(self, message: str, channel: object = None):
        self.channel = channel
        super().__init__(message)


class WorkloadError(KallocError, ValueError):
    """A workload's own bug: it yielded something that is not an operation, or named a
    handle that is not live (freed, consumed by realloc, never returned by malloc).  Bad
    input, not a kernel's end: it stops a grid, and the command line shows it in one line
    (exit status 2) naming the workload, the thread and the operation."""


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def expected(want: type) -> str:
    """How a message names the type a setting takes: "an integer", "true or false", ..."""
    return _KINDS.get(want, f"a {want.__name__}")
