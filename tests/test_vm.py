"""Kernel VA: first fit, submaps, the pmap, and memory access through it."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kalloc
from kalloc.machine import VM_ALLOC_SYSTEM
from kalloc.errors import PageFault
from kalloc.vm import VMMap


def test_first_fit_alignment_and_reuse():
    m = VMMap("t", 0x1000, 0x100000)
    a = m.findspace(0x1000, 0x1000)
    b = m.findspace(0x3000, 0x4000)
    assert (a, b) == (0x1000, 0x4000)          # b rounded up to its alignment
    c = m.findspace(0x1000, 0x1000)
    assert c == 0x2000                          # the gap below b is found first
    m.remove(a, 0x1000)
    assert m.findspace(0x800, 0x1000) == 0x1000
    assert m.size == 0x800 + 0x3000 + 0x1000


def test_remove_merges_and_rejects_unallocated():
    m = VMMap("t", 0, 0x10000)
    xs = [m.findspace(0x1000, 0x1000) for _ in range(4)]
    for x in (xs[1], xs[2], xs[0]):
        m.remove(x, 0x1000)
    assert m.holes == [[0, 0x3000], [0x4000, 0x10000]]
    with pytest.raises(ValueError, match="not allocated"):
        m.remove(0x1000, 0x1000)
    assert m.findspace(0x20000, 0x1000) is None


def test_submap_is_carved_from_parent():
    parent = VMMap("kernel_map", 0, 1 << 24)
    sub = parent.submap("kmem_map", 1 << 20, 4096)
    assert (sub.min_offset, sub.max_offset) == (0, 1 << 20)
    assert parent.findspace(4096, 4096) == 1 << 20


def test_contiguous_va_is_not_contiguous_pa():
    k = kalloc.boot("bump", physmem="16M")
    vm = k.vm
    a = vm.kernel_map.findspace(4 * 4096, 4096)
    assert vm.map_pages(a, 4, VM_ALLOC_SYSTEM, 0)
    b = vm.kernel_map.findspace(4 * 4096, 4096)
    assert vm.map_pages(b, 4, VM_ALLOC_SYSTEM, 4)
    vm.unmap_pages(a, 4)
    va = vm.kernel_map.findspace(8 * 4096, 4096)
    assert vm.map_pages(va, 8, VM_ALLOC_SYSTEM, 0)   # colours 0-3 reuse a's pages, 4-7 are fresh
    phys = [k.vtophys(va + i * 4096) >> 12 for i in range(8)]
    assert len(set(phys)) == 8
    assert any(b != a + 1 for a, b in zip(phys, phys[1:]))
    data = bytes(range(256)) * 40
    k.write(va + 100, data)
    assert k.read(va + 100, len(data)) == data
    assert k.vtophys(va + 4096 + 5) == (phys[1] << 12) + 5


def test_page_fault_on_unmapped():
    k = kalloc.boot("bump")
    with pytest.raises(kalloc.PageFault) as e:
        k.read(0xDEAD0000, 4)
    assert e.value.addr == 0xDEAD0000
    assert "page fault" in str(e.value)
    with pytest.raises(kalloc.PageFault):
        k.write(0xDEAD0000, b"x")


def test_zero_counts_and_clears():
    k = kalloc.boot("bump")
    va = k.vm.kernel_map.findspace(4096, 4096)
    k.vm.map_pages(va, 1, VM_ALLOC_SYSTEM, 0)
    k.write(va, b"\xff" * 100)
    k.vm.zero(va, 50)
    assert k.read(va, 100) == bytes(50) + b"\xff" * 50
    assert k.vm.bytes_zeroed == 50


def test_zero_within_a_page_across_pages_and_of_nothing():
    k = kalloc.boot("bump")
    va = k.vm.kernel_map.findspace(2 * 4096, 4096)
    k.vm.map_pages(va, 2, VM_ALLOC_SYSTEM, 0)
    k.write(va, b"\xff" * 8192)
    k.vm.zero(va + 4000, 96)                   # the end of the first page
    k.vm.zero(va + 4096 + 10, 20)              # inside the second
    k.vm.zero(va + 4090, 12)                   # across the boundary
    data = k.read(va, 8192)
    zeroed = set(range(4000, 4102)) | set(range(4106, 4126))
    assert [i for i in range(8192) if data[i] == 0] == sorted(zeroed)
    k.vm.zero(0xDEAD0000, 0)                   # nothing to zero: no fault, as bzero(p, 0)
    with pytest.raises(PageFault):
        k.vm.zero(0xDEAD0000, 1)
    assert k.vm.bytes_zeroed == 96 + 20 + 12


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 8), st.sampled_from([1, 2, 4]), st.integers(0, 50)),
                max_size=60))
def test_first_fit_against_a_page_bitmap(steps):
    """findspace/remove on a 64-page map agree with first fit over a bitmap, and the holes
    stay sorted, non-empty and apart (merged)."""
    page = 0x1000
    m = VMMap("t", 0, 64 * page)
    used = [False] * 64
    live = []
    for alloc, npages, align, pick in steps:
        if alloc or not live:
            want = next((s for s in range(0, 64 - npages + 1, align)
                         if not any(used[s:s + npages])), None)
            got = m.findspace(npages * page, align * page)
            assert got == (None if want is None else want * page)
            if want is not None:
                used[want:want + npages] = [True] * npages
                live.append((want, npages))
        else:
            start, n = live.pop(pick % len(live))
            m.remove(start * page, n * page)
            used[start:start + n] = [False] * n
        free_pages = [i for i in range(64) if not used[i]]
        assert sorted(p // page for s, e in m.holes for p in range(s, e, page)) == free_pages
        assert all(s < e for s, e in m.holes)
        assert all(a[1] < b[0] for a, b in zip(m.holes, m.holes[1:]))
        assert m.size == (64 - len(free_pages)) * page


def test_unmap_frees_pages_and_counts_shootdown_on_smp():
    k = kalloc.boot("bump", ncpus=2)
    free0 = k.machine.free_count
    va = k.vm.kernel_map.findspace(4 * 4096, 4096)
    k.vm.map_pages(va, 4, VM_ALLOC_SYSTEM, 0)
    assert k.machine.free_count == free0 - 4
    k.vm.unmap_pages(va, 4)
    assert k.machine.free_count == free0 and k.vm.tlb_shootdowns == 1
    assert not k.vm.is_mapped(va)
