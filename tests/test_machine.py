"""The simulated machine: sizes, the free-page queues and their order policies."""

from collections import deque

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kalloc.machine import (ARCHES, PQ_L2_SIZE, VM_ALLOC_INTERRUPT, VM_ALLOC_NORMAL, VM_ALLOC_SYSTEM,
                            VM_ALLOC_ZERO, PAGE_POLICIES, Machine, _pageout_thresholds, parse_size)


@pytest.mark.parametrize("text,value", [("4096", 4096), ("16M", 16 << 20), ("4G", 4 << 30),
                                        ("64k", 65536), (" 2 MiB ", 2 << 20), (123, 123)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["12X", "", "-1", "1.5G", "M"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError, match="bad size"):
        parse_size(bad)


def test_parse_size_types():
    with pytest.raises(TypeError):
        parse_size(1.5)
    with pytest.raises(TypeError):
        parse_size(True)
    with pytest.raises(ValueError, match="negative"):
        parse_size(-4096)


def machine(mb=64, policy="4.8", ncpus=1):
    return Machine(ncpus, mb << 20, ARCHES["i386"], policy)


def test_normal_requests_take_highest_pages_first():
    m = machine()
    top = m.npages - 1
    got = [m.page_alloc(VM_ALLOC_SYSTEM, c) for c in range(PQ_L2_SIZE)]
    assert sorted(got) == list(range(top - PQ_L2_SIZE + 1, top + 1))
    assert [p % PQ_L2_SIZE for p in got] == list(range(PQ_L2_SIZE))  # colour = pindex


def test_zero_requests_take_lowest_pages_under_48_and_highest_after_fix():
    old = machine(policy="2003-08")
    assert [old.page_alloc(VM_ALLOC_ZERO, c) for c in range(4)] == [0, 1, 2, 3]
    fixed = machine(policy="2003-09-14")
    assert min(fixed.page_alloc(VM_ALLOC_ZERO, c) for c in range(4)) >= fixed.npages - PQ_L2_SIZE


def test_2003_09_14_alternates_the_boot_pages_between_head_and_tail():
    """161399b37f: a colour's pages 0, 2, 4 ... (by address) went to the head, 1, 3, 5 ... to
    the tail.  Each kind of request takes its half from the top down, then the other half from
    the bottom up.  8 MiB: 64 pages a colour, pfn = colour + 32 * k."""
    m = machine(8, "2003-09-14")
    n = m.npages // PQ_L2_SIZE
    normal = [m.page_alloc(VM_ALLOC_SYSTEM, 0) for _ in range(n // 2 + 2)]
    assert normal == [PQ_L2_SIZE * k for k in range(n - 2, -1, -2)] + [PQ_L2_SIZE, 3 * PQ_L2_SIZE]
    m = machine(8, "2003-09-14")
    zero = [m.page_alloc(VM_ALLOC_ZERO, 0) for _ in range(n // 2 + 2)]
    assert zero == [PQ_L2_SIZE * k for k in range(n - 1, 0, -2)] + [0, 2 * PQ_L2_SIZE]
    m = machine(8, "2003-09-14")                         # both kinds together: high memory only
    both = [m.page_alloc(VM_ALLOC_ZERO if i % 2 else VM_ALLOC_SYSTEM, 0) for i in range(n - 2)]
    assert min(both) == 2 * PQ_L2_SIZE and len(set(both)) == n - 2


def test_an_empty_colour_sends_every_request_to_the_head_of_another():
    """_vm_page_list_find takes TAILQ_FIRST of the fallback queue, even for VM_ALLOC_ZERO."""
    m = machine(8, "4.8")
    n = m.npages // PQ_L2_SIZE
    for _ in range(n):
        m.page_alloc(VM_ALLOC_SYSTEM, 5)
    top_of_21 = m.npages - PQ_L2_SIZE + 21                 # colour 5 + 16 is tried first
    assert m.page_alloc(VM_ALLOC_ZERO, 5) == top_of_21


def test_freed_page_is_reused_first_by_its_colour():
    m = machine()
    p = m.page_alloc(VM_ALLOC_SYSTEM, 5)
    q = m.page_alloc(VM_ALLOC_SYSTEM, 5)
    m.page_free(p)
    assert m.page_alloc(VM_ALLOC_SYSTEM, p % PQ_L2_SIZE) == p
    assert q != p


def test_class_thresholds():
    m = machine(16)
    while m.free_count > m.v_free_reserved:
        assert m.page_alloc(VM_ALLOC_NORMAL, 0) >= 0
    assert m.page_alloc(VM_ALLOC_NORMAL, 0) == -1          # NORMAL stops at the reserve
    assert m.page_alloc(VM_ALLOC_ZERO, 0) == -1
    while m.free_count > m.v_interrupt_free_min:
        assert m.page_alloc(VM_ALLOC_SYSTEM, 0) >= 0        # SYSTEM digs to interrupt_free_min
    assert m.page_alloc(VM_ALLOC_SYSTEM, 0) == -1
    while m.free_count:
        assert m.page_alloc(VM_ALLOC_INTERRUPT, 0) >= 0     # INTERRUPT takes the last page
    assert m.page_alloc(VM_ALLOC_INTERRUPT, 0) == -1
    assert sorted(set(range(m.npages))) == [i for i in range(m.npages) if m.page_state[i]]


def test_pageout_thresholds_example():
    # docs/research/kmem_map.md 2.3: about 16000 pages gives v_free_reserved ~ 16 + 34 + 20 + 32 = 102
    assert _pageout_thresholds(16000)[1] == 16 + 34 + 16000 // 768 + 32


def test_page_take_and_colour_fallback():
    m = machine(4)
    m.page_take(100)
    assert m.page_state[100] == 1
    taken = {m.page_alloc(VM_ALLOC_INTERRUPT, 100 % 32) for _ in range(m.npages - 1)}
    assert 100 not in taken and len(taken) == m.npages - 1


def test_lazy_frames():
    m = machine()
    assert m.phys.read(7, 0, 4) == bytes(4)
    m.phys.write(7, 10, b"abc")
    assert m.phys.read(7, 9, 5) == b"\0abc\0"
    assert len(m.phys.frames) == 1


class LiteralQueues:
    """The free queues as vm_page.c keeps them: one deque per colour, head on the left."""

    def __init__(self, npages, policy):
        self.q = [deque() for _ in range(PQ_L2_SIZE)]
        flip = [False] * PQ_L2_SIZE
        for pfn in range(npages):                              # vm_page_startup, ascending
            c = pfn % PQ_L2_SIZE
            if PAGE_POLICIES[policy] and flip[c]:
                self.q[c].append(pfn)
            else:
                self.q[c].appendleft(pfn)
            flip[c] = not flip[c]

    def alloc(self, pclass, colour):
        c = colour % PQ_L2_SIZE
        if self.q[c]:
            return self.q[c].pop() if pclass == VM_ALLOC_ZERO else self.q[c].popleft()
        for i in range(PQ_L2_SIZE // 2, 0, -1):                # _vm_page_list_find: TAILQ_FIRST
            for cc in ((c + i) % PQ_L2_SIZE, (c - i) % PQ_L2_SIZE):
                if self.q[cc]:
                    return self.q[cc].popleft()
        raise AssertionError("no free page")


@settings(max_examples=150, deadline=None)
@example("4.8", 200, [("a", 0)] * 12 + [("z", 0)] * 3)          # colour 0 runs empty: the fallback
@example("2003-09-14", 300, [("z", 6)] * 12 + [("n", 0)] * 12 + [("t", 5), ("f", 1), ("z", 0)] * 3)
@given(st.sampled_from(sorted(PAGE_POLICIES)), st.integers(1, 400),
       st.lists(st.tuples(st.sampled_from("aanzzft"), st.integers(0, 10 ** 6)), max_size=400))
def test_colour_queues_against_literal_queues(policy, npages, steps):
    """Machine's ranges-and-stack queues hand out, take back and give up (contigmalloc's
    page_take) exactly the pages literal vm_page.c queues would, on any page count, empty
    colours (the fallback) included."""
    m = Machine(1, npages * 4096, ARCHES["i386"], policy)
    ref = LiteralQueues(npages, policy)
    held = []
    for what, n in steps:
        if what in "anz":
            pclass = {"a": VM_ALLOC_INTERRUPT, "n": VM_ALLOC_NORMAL, "z": VM_ALLOC_ZERO}[what]
            colour = n % 6                                      # few colours: some run empty
            pfn = m.page_alloc(pclass, colour)
            if pfn < 0:                                         # the class rules: tested above
                assert m.free_count == 0 or pclass != VM_ALLOC_INTERRUPT
                continue
            assert pfn == ref.alloc(pclass, colour)
            held.append(pfn)
        elif what == "f" and held:
            pfn = held.pop(n % len(held))
            m.page_free(pfn)
            ref.q[pfn % PQ_L2_SIZE].appendleft(pfn)
        elif what == "t" and m.free_count:
            free = [p for p in range(npages) if not m.page_state[p]]
            pfn = free[n % len(free)]
            m.page_take(pfn)
            ref.q[pfn % PQ_L2_SIZE].remove(pfn)
            held.append(pfn)
        assert m.free_count == sum(len(q) for q in ref.q) == sum(len(q) for q in m.queues)
    for c in range(PQ_L2_SIZE):                                 # drain: the same order to the end
        while ref.q[c]:
            assert m.queues[c].take_head() == ref.q[c].popleft()
