"""The physical page allocator and kernel_map first fit, against the real C, compiled.

tests/reference/vm_sequences.json holds what the real FreeBSD 4.8 / DragonFly 2003 VM code gave
(compiled for i386 in a stub kernel; see its "_source" and "_format"):

* ``page_sequences``: the free colour queues of vm_page.c (vm_add_new_page and vm_page_startup's
  loop, vm_page_alloc with vm_page_select_free / vm_page_list_find / _vm_page_list_find, the
  free-count tests against v_free_reserved and v_interrupt_free_min, vm_page_free_toq) at the
  4.8 import, at the slab commit (2003-08-27) and after 161399b37f (2003-09-14): the pfn each
  vm_page_alloc handed out or its refusal, the free count after each free, and the whole queue
  order at chosen points.  Replayed on ``Machine.page_alloc(class, pindex + object colour)`` /
  ``Machine.page_free`` with the same page policy.
* ``thresholds``: vm_pageout's v_free_min, v_free_reserved, v_interrupt_free_min over page counts
  from 1 to 4 GiB, against ``_pageout_thresholds``.
* ``object_colours``: kernel_object's and kmem_object's pg_color after vm_object_init.
* ``map_sequences``: vm_map_findspace (4.8, and DragonFly's aligned one of 2003-08-25) with
  vm_map_insert / vm_map_simplify_entry / vm_map_delete as kmem_malloc, kmem_slab_alloc and
  vm_map_remove drive them: the address each request got, vm_map.size after each op and the free
  ranges at the end, against ``VMMap.findspace`` / ``VMMap.remove``.

The comparison found three errors in kalloc, fixed with it (2026-11-29): a zero-preferring
request whose colour queue is empty takes the *head* of the fallback queue; 161399b37f's fix is
vm_add_new_page's head/tail flip-flop, not "both kinds take the head"; kmem_map's pages are
kmem_object's, coloured from 19.  Rows with a "deviation" are documented departures;
test_*_deviations checks what kalloc does there instead.
No compiler is needed.
"""

import json
from pathlib import Path

import pytest

import kalloc
from kalloc.machine import ARCHES, PQ_L2_SIZE, Machine, _pageout_thresholds
from kalloc.vm import VMMap

REF = json.loads((Path(__file__).parent / "reference" / "vm_sequences.json").read_text())
PAGE = 4096


def test_source_is_recorded():
    src = REF["_source"]
    for needle in ("vm_page.c 1.147.2.18", "vm_map.c 1.187.2.19", "984263bcb83ad82313113c6ac840d99124d8f90c",
                   "6ab8e1dab9c07e239d4d25e41c5b2adbe808e26c", "161399b37f899229c86ba21dbc10b223288b2dc3"):
        assert needle in src


# --- free-page queues --------------------------------------------------------------------------

def queue_order(q):
    """A kalloc colour queue, head to tail, as the C dumps it."""
    order = list(reversed(q.freed))
    for lo, hi in reversed(q.fresh):
        order.extend(range(hi, lo - 1, -q.step))
    for lo, hi in q.fresh_tail:
        order.extend(range(lo, hi + 1, q.step))
    return ",".join(map(str, order))


def replay_pages(row):
    m = Machine(ncpus=1, physmem=row["npages"] * PAGE, arch=ARCHES["i386"], page_policy=row["version"])
    boot = [m.v_free_min, m.v_free_reserved, m.v_interrupt_free_min]
    handed, out = {}, []
    for op in row["ops"]:
        if op[0] == "a":
            _, k, obj, pindex, pclass = op
            handed[k] = m.page_alloc(pclass, pindex + row["colours"][obj])
            out.append(handed[k])
        elif op[0] in "fz":                  # kalloc has no vm_page_free_zero: both free to the head
            if handed[op[1]] >= 0:
                m.page_free(handed[op[1]])
                handed[op[1]] = -1
            out.append(m.free_count)
        else:
            out.append([queue_order(q) for q in m.queues])
    return boot, out


def test_pq_l2_size():
    assert PQ_L2_SIZE == 32      # default PQ_CACHESIZE 128 (no PQ_* option in i386 GENERIC)


@pytest.mark.parametrize("row", REF["thresholds"], ids=lambda r: str(r[0]))
def test_thresholds(row):
    npages, free_min, free_reserved, interrupt_free_min = row
    assert _pageout_thresholds(npages) == (free_min, free_reserved, interrupt_free_min)


@pytest.mark.parametrize("row", [r for r in REF["page_sequences"] if "deviation" not in r],
                         ids=lambda r: r["name"])
def test_page_sequence_matches_c(row):
    boot, out = replay_pages(row)
    assert boot == row["boot"]
    for i, (op, want, got) in enumerate(zip(row["ops"], row["expected"], out)):
        assert got == want, f"op {i} {op}"
    assert len(out) == len(row["expected"])


@pytest.mark.parametrize("row", [r for r in REF["page_sequences"] if "deviation" in r],
                         ids=lambda r: r["name"])
def test_page_deviations(row):
    """vm_page_free_zero: the C puts the page at the tail as PG_ZERO; kalloc frees it to the head."""
    assert "vm_page_free_zero" in row["deviation"]
    _, out = replay_pages(row)
    handed = {}
    for i, (op, want, got) in enumerate(zip(row["ops"], row["expected"], out)):
        if op[0] == "a":
            handed[op[1]] = want
        if op[0] == "q":
            break
        assert got == want, f"op {i} {op}"    # the same pages and free counts up to the dump
    freed = [(op[0], handed[op[1]]) for op in row["ops"][:i] if op[0] in "fz"]
    zeroed = [p for kind, p in freed if kind == "z"]
    colour = zeroed[0] % PQ_L2_SIZE
    assert all(p % PQ_L2_SIZE == colour for _, p in freed)
    c_queue, k_queue = want[colour].split(","), got[colour].split(",")
    assert c_queue[-len(zeroed):] == [f"{p}z" for p in zeroed]                    # C: PG_ZERO at the tail
    assert [int(p) for p in k_queue[:len(freed)]] == [p for _, p in freed][::-1]  # kalloc: all at the head
    assert sorted(int(p.rstrip("z")) for p in c_queue) == sorted(int(p) for p in k_queue)


def test_object_colours():
    """kernel_object gets pg_color 0, kmem_object 0 + PQ_L2_SIZE/3 + PQ_PRIME1 = 19 (vm_object_init)."""
    for version, colours in REF["object_colours"].items():
        assert colours["kernel_object"] == 0, version
        assert colours["kmem_object"] == 19, version


def test_kmem_map_pages_use_kmem_object_colour():
    """4.8's kmem_malloc takes its pages from kmem_object, whose pg_color is 19."""
    k = kalloc.boot("kmem_map", ncpus=1, physmem="64M")
    va = k.malloc(3 * PAGE, kalloc.MallocType("t"), 0)    # a large block: kmem_malloc, pages fresh from boot
    arch = k.machine.arch
    want = [(((va + i * PAGE - arch.kva_min) >> 12) + REF["object_colours"]["4.8"]["kmem_object"]) % PQ_L2_SIZE
            for i in range(3)]
    assert [(k.vm.vtophys(va + i * PAGE) >> 12) % PQ_L2_SIZE for i in range(3)] == want


# --- kernel_map first fit ----------------------------------------------------------------------

def replay_map(row):
    m = VMMap("m", row["min"], row["max"])
    got, out = {}, []
    for n, op in enumerate(row["ops"], 1):
        if op[0] in "ka":
            size = (op[1] + PAGE - 1) & ~(PAGE - 1)
            va = m.findspace(size, PAGE if op[0] == "k" else op[2])
            got[n] = va
            out.append([-1 if va is None else va - row["min"], m.size])
        else:
            _, k, off, length = op
            if got[k] is not None:
                m.remove(got[k] + off, length)
            out.append(["r", m.size])
    return out, [[s - row["min"], e - row["min"]] for s, e in m.holes]


@pytest.mark.parametrize("row", [r for r in REF["map_sequences"] if "deviation" not in r], ids=lambda r: r["name"])
def test_map_sequence_matches_c(row):
    out, holes = replay_map(row)
    for i, (op, want, got) in enumerate(zip(row["ops"], row["expected"], out)):
        assert got == want, f"op {i + 1} {op}"
    assert holes == row["holes"]


@pytest.mark.parametrize("row", [r for r in REF["map_sequences"] if "deviation" in r], ids=lambda r: r["name"])
def test_map_deviations(row):
    """The C's first_free hops over a hole left below the lowest entry when first_free was the header;
    kalloc's first fit uses that hole: the first request that fits there gets a lower address."""
    out, _ = replay_map(row)
    first = next(i for i, (a, b) in enumerate(zip(row["expected"], out)) if a != b)
    assert row["expected"][:first] == out[:first]
    lowest = min(e[0] for e in row["expected"][:first] if isinstance(e[0], int) and e[0] >= 0)
    assert lowest > 0                                  # aligned first fit left [min, lowest) free
    assert 0 <= out[first][0] < lowest < row["expected"][first][0]
