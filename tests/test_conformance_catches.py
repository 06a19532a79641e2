"""The conformance battery catches what it says it catches: each deliberately broken
backend below (bump with one rule of docs/backends.md broken) fails the check for that
rule, while bump itself passes it (tests/test_conformance.py runs the whole battery on it)."""

import pytest

import kalloc
from kalloc import conformance_suite as suite
from kalloc import hookimpl
from kalloc.backends.base import bad_free
from kalloc.backends.bump import BumpBackend


class FreeAnyCpu(BumpBackend):
    """free takes a CPU out of range."""
    NAME = "broken-free-any-cpu"

    def free(self, addr, mtype, cpu=0):
        super().free(addr, mtype, 0)


class WaitokNull(BumpBackend):
    """M_WAITOK gets NULL when memory runs out."""
    NAME = "broken-waitok-null"

    def _grow(self, n, f):
        try:
            return super()._grow(n, f)
        except kalloc.KernelPanic:
            return False


class SleepsAfterCounting(BumpBackend):
    """Sleeps when memory runs out, but after malloc counted the call in ks_calls."""
    NAME = "broken-sleeps-late"

    def _grow(self, n, f):
        try:
            return super()._grow(n, f)
        except kalloc.KernelPanic:
            raise kalloc.Deadlock("sleeps on vmwait", "vmwait") from None


class DoubleFreeIsWild(BumpBackend):
    """Cannot tell a double free from a wild one (no was_chunk)."""
    NAME = "broken-double-free-wild"

    def was_chunk(self, addr):
        return False


class UsableSizeOfFreed(BumpBackend):
    """usable_size answers for a block that was freed."""
    NAME = "broken-usable-size"

    def usable_size(self, addr):
        if addr not in self.sizes:
            raise bad_free(self, addr, None, self.live, "usable_size")
        return self.sizes[addr]


class FreeNullTypeError(BumpBackend):
    """free(NULL) fails on its arithmetic."""
    NAME = "broken-free-null-typeerror"

    def free(self, addr, mtype, cpu=0):
        if not addr:
            raise TypeError("unsupported operand type(s) for -: 'NoneType' and 'int'")
        super().free(addr, mtype, cpu)


class FreeNullBadFree(BumpBackend):
    """free(NULL) is reported as a wild pointer."""
    NAME = "broken-free-null-badfree"

    def free(self, addr, mtype, cpu=0):
        if not addr:
            raise bad_free(self, addr or 0, mtype, self.live)
        super().free(addr, mtype, cpu)


class SharedState(BumpBackend):
    """Every kernel's allocations in one class-wide table."""
    NAME = "broken-shared-state"
    LIVE: dict = {}
    SIZES: dict = {}

    def __init__(self, kernel, options):
        super().__init__(kernel, options)
        self.live, self.sizes = self.LIVE, self.SIZES


class ClassRowsShort(BumpBackend):
    """classes() rows without the keys kalloc info reads."""
    NAME = "broken-class-rows"

    def classes(self):
        return [{"size": 16, "inuse": 1}]


MEMORY = dict(zip(("what", "limit", "size"), suite.SCARCITIES[1]))

# (broken backend, the check that must fail, its arguments, what its failure says)
BROKEN = [
    (FreeAnyCpu, suite.test_bad_cpu, {}, "free on cpu -1 of 2 was accepted"),
    (WaitokNull, suite.test_waitok_never_returns_null, MEMORY, "M_WAITOK malloc(65536) returned NULL"),
    (SleepsAfterCounting, suite.test_sleeping_changes_nothing, MEMORY, "changed the kernel's state"),
    (DoubleFreeIsWild, suite.test_bad_frees, {"size": 100}, "a double free raised WildFree"),
    (UsableSizeOfFreed, suite.test_usable_size_of_a_block_not_live, {"size": 100},
     "usable_size of a freed block was accepted"),
    (FreeNullTypeError, suite.test_free_null, {"null": 0}, "free(0) raised TypeError"),
    (FreeNullBadFree, suite.test_free_null, {"null": None}, "free(None) raised WildFree"),
    (SharedState, suite.test_kernels_share_nothing, {"ncpus": 2}, "on a second kernel of the first one's block"),
    (ClassRowsShort, suite.test_classes_rows, {}, "lacks objs_per_slab, slab_bytes, first_offset, free, slabs"),
]
IDS = [b[0].NAME for b in BROKEN]


class _Broken:
    @hookimpl
    def kalloc_backends(self):
        return [b[0] for b in BROKEN]


@pytest.fixture(scope="module", autouse=True)
def registered(register_plugin):
    register_plugin(_Broken(), "broken-backends")


@pytest.mark.parametrize("cls,check,args,says", BROKEN, ids=IDS)
def test_the_battery_fails_a_broken_backend(cls, check, args, says):
    with pytest.raises((AssertionError, pytest.fail.Exception)) as e:
        check(cls.NAME, {}, **args)
    assert says in str(e.value)


@pytest.mark.parametrize("cls,check,args,says", BROKEN, ids=IDS)
def test_the_same_check_passes_bump(cls, check, args, says):
    check("bump", {}, **args)
