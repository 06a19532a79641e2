"""vm_zone (FreeBSD 4.8 vm_zone.c 1.30.2.6) against docs/research/kmem_map.md section 5."""

import pytest

import kalloc
from kalloc import vm_zone as vz
from kalloc.costs import CostModel
from kalloc.errors import Deadlock, DoubleFree, KernelPanic, WildFree
from kalloc.harness import Simulator
from kalloc.workload import call


def boot(backend="kmem_map", **kw):
    kw.setdefault("physmem", "64M")
    return kalloc.boot(backend, **kw)


@pytest.mark.parametrize("size,zsize,zfreemin", [(1, 32, 128), (32, 32, 128), (33, 64, 64), (100, 128, 32),
                                                 (4096, 4096, 1), (4097, 4128, 1), (200, 224, 18)])
def test_zsize_rounds_to_32_and_zfreemin(size, zsize, zfreemin):
    z = vz.zinit(boot(), "z", size)
    assert (z.zsize, z.zfreemin, z.zalloc, z.zmax, z.zallocflag) == (zsize, zfreemin, 1, 0, 2)


def test_zinit_mallocs_its_header_from_the_kernel():
    k = boot()
    vz.zinit(k, "a", 64)
    vz.zinit(k, "b", 64)
    hdr = k.types["ZONE"]
    assert (hdr.inuse, hdr.memuse) == (2, 256)       # sizeof(struct vm_zone) 68 -> the 128 bucket
    k64 = boot(arch="amd64")
    vz.zinit(k64, "a", 64)
    assert k64.types["ZONE"].memuse == 128           # 96 bytes with 8-byte pointers


def test_refill_returns_the_highest_item_and_keeps_a_reserve():
    k = boot()
    z = vz.zinit(k, "test", 64)
    a = vz.zalloc(z)
    base = a - 63 * 64
    assert base % 4096 == 0                          # one kmem_alloc page, 64 items
    assert (z.ztotal, z.zfreecnt, z.znalloc) == (64, 63, 1)
    b = vz.zalloc(z)                                 # 63 <= zfreemin 64: refill again
    base2 = b - 63 * 64
    assert base2 != base and (z.ztotal, z.zfreecnt, z.znalloc) == (128, 126, 2)
    assert vz.zalloc(z) == base2 + 62 * 64           # now a pop: the second refill's list head
    assert [vz.zalloc(z) for _ in range(2)] == [base2 + 61 * 64, base2 + 60 * 64]
    assert vz.zone_list(k).kern_pages == 2


def test_refill_memory_is_kmem_alloc_zero_pages_zeroed_twice():
    for policy, low in (("4.8", True), ("2003-09-14", False)):
        k = boot(page_policy=policy)
        z = vz.zinit(k, "test", 64)
        z0 = k.vm.bytes_zeroed
        a = vz.zalloc(z)
        assert k.vm.bytes_zeroed - z0 == 2 * 4096    # vm_page_zero_fill, then _zget's bzero
        assert (k.vtophys(a) < 1 << 20) == low       # VM_ALLOC_ZERO: the tail under 4.8


def test_a_free_at_the_reserve_refills_instead_of_reusing():
    k = boot()
    z = vz.zinit(k, "test", 64)
    a = vz.zalloc(z)
    vz.zfree(z, a)                                   # zfreecnt 64 <= zfreemin 64
    assert vz.zalloc(z) != a and z.ztotal == 128


def test_zfree_is_lifo_and_checked():
    k = boot()
    z = vz.zinit(k, "test", 100)
    a, b = vz.zalloc(z), vz.zalloc(z)
    n = z.zfreecnt
    vz.zfree(z, a)
    assert z.zfreecnt == n + 1 and vz.zalloc(z) == a
    vz.zfree(z, b)
    with pytest.raises(DoubleFree, match="^zone: freeing free entry$"):
        vz.zfree(z, b)
    with pytest.raises(DoubleFree):
        vz.zfree(z, b - 128)                         # carved, never handed out: free too
    with pytest.raises(WildFree, match="not an item of this zone"):
        vz.zfree(z, b + 8)
    other = vz.zinit(k, "other", 100)
    with pytest.raises(WildFree):
        vz.zfree(other, a)
    assert z.zfreecnt == n + 1


def test_interrupt_zone_maps_pages_on_demand_up_to_its_kva():
    k = boot()
    z = vz.zinit(k, "intr", 96, 100, vz.ZONE_INTERRUPT, 1)
    zl = vz.zone_list(k)
    assert (z.zsize, z.zmax, z.zpagemax, z.zfreemin, z.zallocflag) == (96, 100, 3, 42, 1)
    assert zl.kmem_kvaspace == 12288 and not k.vm.is_mapped(z.zkva)
    a = vz.zalloc(z)
    assert a == z.zkva + 41 * 96 and (z.ztotal, z.zfreecnt, z.zpagecount) == (42, 41, 1)
    b = vz.zalloc(z)                                 # the item straddling page 0/1 starts the refill
    assert b == z.zkva + 4032 + 42 * 96 and (z.ztotal, z.zfreecnt) == (85, 83)
    assert vz.zalloc(z) == z.zkva + 4032 + 41 * 96
    got = [vz.zalloc(z) for _ in range(126)]
    assert z.zpagecount == 3 and z.ztotal == 128      # page rounding gives more than nentries
    assert got[-1] is None and sum(g is not None for g in got) == 125 and z.zfreecnt == 0
    assert zl.kmem_pages == 3


def test_panicfail_zone_panics_when_it_cannot_grow():
    k = boot()
    z = vz.zinit(k, "tiny", 2048, 2, vz.ZONE_INTERRUPT | vz.ZONE_PANICFAIL)
    assert [vz.zalloc(z) for _ in range(2)]
    with pytest.raises(KernelPanic, match=r"^zalloc\(tiny\) failed$"):
        vz.zalloc(z)


def test_zinit_fails_cleanly_without_kva():
    k = boot()
    assert vz.zinit(k, "huge", 1 << 20, 2000, vz.ZONE_INTERRUPT) is None
    assert k.types["ZONE"].inuse == 0 and vz.zone_list(k).zones == []


def test_zbootinit_then_zinitna_as_kmapentzone():
    k = boot()
    static = vz.kmem_alloc(k.vm, 4096, "test")
    k.write(static, b"\xff" * 400)
    z = vz.zbootinit(k, "MAP ENTRY", 40, static, 10)
    assert k.read(static, 400) == bytes(400)
    assert (z.zsize, z.zfreecnt, z.zmax, z.ztotal, z.zfreemin) == (40, 10, 10, 10, 0)
    assert [vz.zalloc(z) for _ in range(10)] == [static + 40 * i for i in range(9, -1, -1)]
    assert vz.zalloc(z) is None                      # zalloc 0: a boot zone cannot grow
    assert vz.zinitna(z, "MAP ENTRY", 40, 100, vz.ZONE_INTERRUPT, 1)
    assert (z.zmax, z.zfreemin, z.zsize) == (110, 102, 40)
    assert vz.zalloc(z) == z.zkva + 101 * 40
    assert [x.zname for x in vz.zone_list(k).zones] == ["MAP ENTRY"]


def test_sysctl_vm_zone_text():
    k = boot()
    assert vz.sysctl_vm_zone(k) == vz.SYSCTL_HEADER
    z = vz.zinit(k, "PIPE", 160)
    vz.zalloc(z)
    zi = vz.zinit(k, "a_very_long_zone_name", 96, 100, vz.ZONE_INTERRUPT)
    vz.zalloc(zi)
    assert vz.sysctl_vm_zone(k) == (
        "\nITEM            SIZE     LIMIT    USED    FREE  REQUESTS\n"
        "\na_very_long_z: 000096, 00000100, 000001, 000041, 00000001"
        "\nPIPE:         000160, 00000000, 000001, 000024, 00000001")
    assert vz.zone_stats(k)["zones"][1] == {"name": "PIPE", "size": 160, "limit": 0, "used": 1, "free": 24,
                                            "requests": 1}


def test_locks_counted_as_4_8_takes_them():
    k = boot()
    be = k.backend
    z = vz.zinit(k, "z", 64)
    n = be.lock_acquires
    a = vz.zalloc(z)
    vz.zfree(z, a)
    assert be.lock_acquires == n                     # UP zalloc/zfree: no lock
    vz.zfreei(z, vz.zalloci(z))
    assert be.lock_acquires == n + 2
    smp = boot(ncpus=2)
    z = vz.zinit(smp, "z", 64)
    n = smp.backend.lock_acquires
    vz.zfree(z, vz.zalloc(z))                        # on SMP zalloc is zalloci
    vz.zfreei(z, vz.zalloci(z))
    assert smp.backend.lock_acquires == n + 4


def test_invariants_marker_catches_a_write_to_a_free_item():
    k = boot(invariants=True)
    z = vz.zinit(k, "z", 64)
    vz.zalloc(z), vz.zalloc(z)                        # two refills: above the zfreemin reserve
    a = vz.zalloc(z)
    head = z.items[-1]
    assert k.read(head + 4, 4) == (vz.ZENTRY_FREE).to_bytes(4, "little") and k.read(a + 4, 4) == bytes(4)
    vz.zfree(z, a)
    assert k.read(a + 4, 4) == (vz.ZENTRY_FREE).to_bytes(4, "little")
    k.write(a + 4, b"oops")
    with pytest.raises(KernelPanic, match="^zone: entry not free$"):
        vz.zalloc(z)


def test_works_on_any_backend():
    k = boot("bump")
    z = vz.zinit(k, "z", 48)
    vz.zalloc(z), vz.zalloc(z)
    a = vz.zalloc(z)
    k.write(a, b"x" * 64)
    vz.zfree(z, a)
    assert vz.zalloc(z) == a and z.zsize == 64


def test_page_shortage_sleeps_on_vmwait():
    k = boot(physmem="4M")
    m = k.machine
    z = vz.zinit(k, "z", 64, 0, 0, 16)
    while m.free_count > m.v_free_reserved:
        m.page_alloc(1)
    used = k.vm.kernel_map.size
    with pytest.raises(Deadlock, match=r'^zalloc\(z\) sleeps on "vmwait": kmem_alloc\(65536\)') as e:
        vz.zalloc(z)
    assert e.value.channel == "vmwait" and k.vm.kernel_map.size == used and z.ztotal == 0


def test_zalloc_through_the_harness():
    k = boot(ncpus=2)
    z = vz.zinit(k, "z", 64)
    sim = Simulator(k, CostModel.from_config({}))
    got = []

    def thread():
        item = yield call(lambda kern: vz.zalloc(z))
        got.append(item)
        yield call(lambda kern: vz.zfree(z, item))

    sim.add_thread(0, "a", thread())
    sim.add_thread(1, "b", thread())
    sim.run()
    assert len(set(got)) == 2 and z.zfreecnt == z.ztotal


@pytest.mark.parametrize("args,msg", [(("", 64), "name"), (("z", 0), "size"), (("z", 64, 0, 0x4), "flags"),
                                      (("z", 64, 0, vz.ZONE_INTERRUPT), "nentries > 0")])
def test_bad_arguments(args, msg):
    with pytest.raises(ValueError, match=msg):
        vz.zinit(boot(), *args)
    with pytest.raises(KernelPanic, match="invalid zone"):
        vz.zalloc(None)
