"""malloc(9) flags with the values of DragonFly's sys/malloc.h 1.7 (2003-08-27).

Those values came in with "Bring the malloc/mbuf flags up-to-date with FreeBSD"
(2003-07-28).  FreeBSD 4.8 numbered them differently (M_WAITOK 0, M_NOWAIT 1,
M_USE_RESERVE 2, M_ASLEEP 4, M_ZERO 8) and had no M_NULLOK; ``kalloc_compat.freebsd4``
translates.  Both originals decide "may sleep" by the *absence* of M_NOWAIT, so
``M_ZERO`` alone is a waiting request.

Flags are an ``enum.IntFlag`` for users, but an IntFlag operation costs hundreds of
nanoseconds, so every entry point turns them into a plain int once with
``FLAG_INT.get(flags, -1)``: one dict lookup that both validates and converts.  The
lookup alone would take ``True`` or ``2.0`` too (they hash like 1 and 2), so the hot
paths also test that the class is int or MallocFlags, and ``plain_flags`` (the slow
path) that the flags are an int and not a bool.
"""

from __future__ import annotations

import enum
import itertools


class MallocFlags(enum.IntFlag):
    M_NOWAIT = 0x0001
    M_WAITOK = 0x0002
    M_ZERO = 0x0100
    M_USE_RESERVE = 0x0200
    M_NULLOK = 0x0400


M_NOWAIT = MallocFlags.M_NOWAIT
M_WAITOK = MallocFlags.M_WAITOK
M_ZERO = MallocFlags.M_ZERO
M_USE_RESERVE = MallocFlags.M_USE_RESERVE
M_NULLOK = MallocFlags.M_NULLOK

# Plain-int twins for the hot paths.
NOWAIT, WAITOK, ZERO, USE_RESERVE, NULLOK = 0x1, 0x2, 0x100, 0x200, 0x400
MAY_FAIL = NOWAIT | NULLOK  # a caller that accepts NULL instead of a panic

# Every valid combination -> its plain int.  M_WAITOK together with M_NOWAIT is invalid.
FLAG_INT = {
    v: v
    for r in range(6)
    for combo in itertools.combinations((NOWAIT, WAITOK, ZERO, USE_RESERVE, NULLOK), r)
    for v in [sum(combo)]
    if not (v & NOWAIT and v & WAITOK)
}


def plain_flags(flags) -> int:
    """Valid flags as a plain int, else the error that says what is wrong with them."""
    try:
        f = FLAG_INT[flags]
    except (KeyError, TypeError):                # TypeError: unhashable, so no flags either
        f = -1
    if f < 0 or isinstance(flags, bool) or not isinstance(flags, int):
        raise bad_flags(flags)
    return f


def bad_flags(flags) -> ValueError | TypeError:
    """The error for flags that FLAG_INT refused."""
    if isinstance(flags, bool) or not isinstance(flags, int):
        return TypeError(f"malloc flags must be an int or MallocFlags, not {type(flags).__name__}")
    if flags & NOWAIT and flags & WAITOK:
        return ValueError("malloc flags: M_WAITOK and M_NOWAIT are mutually exclusive")
    unknown = flags & ~(NOWAIT | WAITOK | ZERO | USE_RESERVE | NULLOK)
    return ValueError(f"malloc flags: unknown bits {unknown:#x} in {flags:#x}")


def flag_names(flags: int) -> str:
    """'M_NOWAIT|M_ZERO' for a plain int (reports and error messages)."""
    return "|".join(f.name for f in MallocFlags if flags & f) or "0"
