"""Kernel VA: first fit, submaps, the pmap, and memory access through it."""

import pytest

import kalloc
from kalloc.machine import VM_ALLOC_SYSTEM
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


def test_unmap_frees_pages_and_counts_shootdown_on_smp():
    k = kalloc.boot("bump", ncpus=2)
    free0 = k.machine.free_count
    va = k.vm.kernel_map.findspace(4 * 4096, 4096)
    k.vm.map_pages(va, 4, VM_ALLOC_SYSTEM, 0)
    assert k.machine.free_count == free0 - 4
    k.vm.unmap_pages(va, 4)
    assert k.machine.free_count == free0 and k.vm.tlb_shootdowns == 1
    assert not k.vm.is_mapped(va)
