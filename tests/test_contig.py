"""contigmalloc/contigfree: the 4.8 scan, its tests and quirks, and the fast scan's equivalence."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kalloc
from kalloc.dma.contig import (contigfree, contigmalloc, find_run, free_below, map_frames, phys_read,
                               unmap_frames)
from kalloc.errors import BadFree, KernelPanic, WildFree

PS, SHIFT = 4096, 12


def reference_find_run(state, npg, low, high, alignment, boundary, shift):
    """contigmalloc1 transcribed page by page (kmem_map.md section 3), for comparison."""
    n = len(state)
    size = npg << shift
    start = 0
    for _pass in range(2):
        while True:                               # again:
            i = start
            while i < n:
                phys = i << shift
                if (state[i] == 0 and low <= phys < high and phys & (alignment - 1) == 0
                        and (phys ^ (phys + size - 1)) & ~(boundary - 1) == 0):
                    break
                i += 1
            if i == n or (i << shift) + size > high:
                break                             # launder (nothing), next pass
            start = i
            for j in range(start + 1, start + npg):
                if j >= n or state[j]:
                    start += 1
                    break
            else:
                return start
    return None


powers = st.sampled_from([0, 1, 2, 512, 4096, 8192, 16384, 32768, 65536, 1 << 20])


@settings(max_examples=400, deadline=None)
@given(state=st.lists(st.sampled_from([0, 0, 0, 1]), min_size=1, max_size=160).map(bytearray),
       npg=st.integers(1, 12), low=st.integers(0, 170 * PS), span=st.integers(0, 170 * PS),
       alignment=powers, boundary=powers)
def test_fast_scan_equals_page_by_page(state, npg, low, span, alignment, boundary):
    high = low + span
    assert (find_run(state, npg, low, high, alignment, boundary, SHIFT)
            == reference_find_run(state, npg, low, high, alignment, boundary, SHIFT))


class CountedPages(bytearray):
    """A page array that counts the pages read one at a time (``find`` is not counted)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads = 0

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def test_fast_scan_on_a_4g_page_array_reads_few_pages():
    """1M pages all wired but 64 near the top: the scan jumps (bytearray.find, window
    arithmetic) instead of testing a million pages one by one."""
    state = CountedPages(b"\x01" * (1 << 20))
    state[-100:-36] = bytes(64)
    assert find_run(state, 16, 0, 1 << 32, 65536, 0, SHIFT) == (1 << 20) - 96
    assert find_run(state, 65, 0, 1 << 32, 4096, 0, SHIFT) is None
    assert state.reads < 100, state.reads


def kernel(physmem="64M"):
    return kalloc.boot("bump", physmem=physmem)


def test_run_is_contiguous_mapped_and_off_the_free_queues():
    k = kernel()
    free0 = k.machine.free_count
    va = contigmalloc(k, 3 * PS + 1, None, 0, 0, 0xffffff, PS, 0)   # rounds to 4 pages
    phys = k.vtophys(va)
    assert [k.vtophys(va + i * PS) for i in range(4)] == [phys + i * PS for i in range(4)]
    assert k.machine.free_count == free0 - 4
    assert all(k.machine.page_state[(phys >> SHIFT) + i] for i in range(4))
    k.write(va + 10, b"contig")
    assert phys_read(k, phys + 10, 6) == b"contig"
    contigfree(k, va, 3 * PS + 1, None)
    assert k.machine.free_count == free0
    assert not k.vm.is_mapped(va) and not k.vm.kernel_map.is_allocated(va, 4 * PS)


def test_first_fit_from_the_bottom_with_alignment():
    k = kernel()
    a = contigmalloc(k, PS, None, 0, 0, 1 << 32, 1, 0)
    b = contigmalloc(k, 2 * PS, None, 0, 0, 1 << 32, 65536, 0)
    assert k.vtophys(a) == 0                      # the lowest free page
    assert k.vtophys(b) == 65536                  # next 64 KiB-aligned run


def test_low_limit_and_boundary_window():
    k = kernel()
    va = contigmalloc(k, 4 * PS, None, 0, 0xe000, 0xffffff, 1, 0)
    assert k.vtophys(va) == 0xe000               # no boundary: crossing 64 KiB is fine
    va = contigmalloc(k, 4 * PS, None, 0, 0x1e000, 0xffffff, 1, 0x10000)
    assert k.vtophys(va) == 0x20000              # 0x1e000 + 16K would cross 128 KiB
    assert contigmalloc(k, 0x20000, None, 0, 0, 0xffffff, 1, 0x10000) is None  # larger than its window


def test_high_is_exclusive_and_0xffffff_loses_the_last_page():
    k = kernel("32M")
    m = k.machine
    for pfn in range(0x1000 - 16):               # wire everything below 16 MiB but 64 KiB
        if not m.page_state[pfn]:
            m.page_take(pfn)
    assert contigmalloc(k, 65536, None, 0, 0, 0xffffff, 1, 0x10000) is None
    va = contigmalloc(k, 65536, None, 0, 0, 0x1000000, 1, 0x10000)
    assert k.vtophys(va) == 0x1000000 - 65536
    assert free_below(k) == {"free_bytes": 0, "largest_run_bytes": 0, "largest_run_phys": None}


def test_alignment_zero_admits_only_physical_zero():
    k = kernel()
    va = contigmalloc(k, PS, None, 0, 0, 1 << 32, 0, 0)
    assert k.vtophys(va) == 0
    assert contigmalloc(k, PS, None, 0, 0, 1 << 32, 0, 0) is None


@pytest.mark.parametrize("args,message", [
    ((0, 0, 0xffffff, 1, 0), "contigmalloc1: size must not be 0"),
    ((PS, 0, 0xffffff, 3, 0), "contigmalloc1: alignment must be a power of 2"),
    ((PS, 0, 0xffffff, 1, 0x18000), "contigmalloc1: boundary must be a power of 2"),
])
def test_4_8_panics(args, message):
    size, low, high, align, boundary = args
    with pytest.raises(KernelPanic, match=f"^{message}$"):
        contigmalloc(kernel(), size, None, 0, low, high, align, boundary)


def test_bad_arguments_are_clear():
    k = kernel()
    with pytest.raises(ValueError, match="low 0x2000 is above high 0x1000"):
        contigmalloc(k, PS, None, 0, 0x2000, 0x1000, 1, 0)
    with pytest.raises(ValueError, match="size must not be negative"):
        contigmalloc(k, -1, None, 0, 0, 0x1000, 1, 0)
    with pytest.raises(TypeError, match="alignment must be an integer"):
        contigmalloc(k, PS, None, 0, 0, 0x1000, 1.0, 0)
    with pytest.raises(TypeError, match="malloc type must be a kalloc.MallocType or None, not str"):
        contigmalloc(k, PS, "devbuf", 0, 0, 0x1000, 1, 0)
    with pytest.raises(ValueError, match="M_WAITOK and M_NOWAIT are mutually exclusive"):
        contigmalloc(k, PS, None, 3, 0, 0x1000, 1, 0)
    with pytest.raises(ValueError, match="size 0x100000000 does not fit the 32-bit unsigned long of i386"):
        contigmalloc(k, 1 << 32, None, 0, 0, 0xffffffff, 1, 0)
    with pytest.raises(KernelPanic, match="contigmalloc1: size must not be 0"):   # round_page wraps, as in 4.8
        contigmalloc(k, 0xfffff001, None, 0, 0, 0xffffffff, 1, 0)


def test_contigfree_checks_what_4_8_does_not():
    k = kernel()
    va = contigmalloc(k, 4 * PS, None, 0, 0, 0xffffff, 1, 0)
    with pytest.raises(BadFree, match=r"16384 bytes \(4 pages\) but freed with size 4096 \(1 pages\)"):
        contigfree(k, va, PS, None)
    contigfree(k, va, 4 * PS - 100, None)        # the same page count is the same free
    with pytest.raises(WildFree, match="not a live contigmalloc allocation"):
        contigfree(k, va, 4 * PS, None)
    with pytest.raises(WildFree):
        contigfree(k, k.malloc(64, k.malloc_type("devbuf")), 64, None)


def test_kernel_entry_points_delegate():
    k = kernel()
    va = k.contigmalloc(PS, None, 0, 0, 0xffffff, 1, 0)
    assert k.vtophys(va) == 0
    k.contigfree(va, PS, None)
    assert k.machine.page_state[0] == 0


def test_map_frames_builds_a_chosen_physical_layout():
    k = kernel()
    free0 = k.machine.free_count
    va = map_frames(k, [0x2000, 0x10])
    assert (k.vtophys(va), k.vtophys(va + PS + 5)) == (0x2000000, 0x10005)
    with pytest.raises(ValueError, match="not free: \\[16\\]"):
        map_frames(k, [0x11, 0x10])
    with pytest.raises(ValueError, match="distinct free page frames"):
        map_frames(k, [0x12, 0x12])
    unmap_frames(k, va, 2)
    assert k.machine.free_count == free0
