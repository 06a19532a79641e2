"""The Linux and FreeBSD 4 API shims, on every installed backend."""

import pytest

import kalloc
from kalloc import plugins
from kalloc.flags import NOWAIT, WAITOK, ZERO
from kalloc_compat import freebsd4 as bsd
from kalloc_compat import linux as lx

BACKENDS = list(plugins.backends())


@pytest.mark.parametrize("text,flags", [
    ("GFP_KERNEL", WAITOK), ("GFP_ATOMIC", NOWAIT), ("GFP_NOWAIT", NOWAIT),
    ("GFP_KERNEL|__GFP_ZERO", WAITOK | ZERO), ("GFP_NOFS|__GFP_ZERO|__GFP_NOFAIL|__GFP_ACCOUNT", WAITOK | ZERO),
    ("GFP_NOWAIT|__GFP_NORETRY|__GFP_NOMEMALLOC", NOWAIT), ("GFP_KERNEL_ACCOUNT", WAITOK), ("0xcc0", WAITOK),
    ("0x820", NOWAIT),
])
def test_gfp_mapping(text, flags):
    assert lx.gfp_to_flags(lx.gfp_value(text)) == flags


def test_unknown_gfp_name():
    with pytest.raises(ValueError, match="unknown gfp flag"):
        lx.gfp_value("GFP_MAGIC")


@pytest.mark.parametrize("backend", BACKENDS)
def test_linux_api(backend):
    L = lx.Linux(kalloc.boot(backend, ncpus=2))
    p = L.kzalloc(100)
    assert L.k.read(p, 100) == bytes(100) and L.ksize(p) >= 100
    L.k.write(p, b"abc")
    q = L.krealloc(p, L.ksize(p))
    assert q == p                                  # ksize covers it: same pointer
    r = L.krealloc(p, 5000)
    assert L.k.read(r, 3) == b"abc"
    assert L.kmalloc(0) == lx.ZERO_SIZE_PTR
    L.kfree(lx.ZERO_SIZE_PTR), L.kfree(None)
    c = L.kmem_cache_create("dentry", 192)
    d = L.kmem_cache_alloc(c, lx.GFP_ATOMIC, cpu=1)
    with pytest.raises(kalloc.KernelPanic, match="still has objects"):
        L.kmem_cache_destroy(c)
    with pytest.raises(kalloc.KernelPanic, match="use kmem_cache_free"):
        L.kfree(d)
    L.kmem_cache_free(c, d)
    L.kmem_cache_destroy(c)
    L.kfree(r)
    with pytest.raises(kalloc.WildFree):
        L.kfree(r)
    assert L.k.types["dentry"].inuse == 0 and L.k.types["kmalloc"].inuse == 0
    assert L.kcalloc(1 << 40, 1 << 40) is None


def test_freebsd4_flags():
    assert bsd.to_kalloc_flags(bsd.M_WAITOK) == WAITOK
    assert bsd.to_kalloc_flags(bsd.M_NOWAIT | bsd.M_ZERO) == NOWAIT | ZERO
    assert bsd.to_kalloc_flags(bsd.M_ASLEEP) == NOWAIT
    with pytest.raises(ValueError):
        bsd.to_kalloc_flags(0x100)


@pytest.mark.parametrize("backend", BACKENDS)
def test_freebsd4_api(backend):
    M_AHC = bsd.MALLOC_DEFINE("ahc", "ahc driver")
    b = bsd.FreeBSD4(kalloc.boot(backend))
    p = b.MALLOC(64, M_AHC, bsd.M_NOWAIT | bsd.M_ZERO)
    assert b.k.read(p, 64) == bytes(64) and M_AHC.inuse == 1
    q = b.realloc(p, 4000, M_AHC)
    b.FREE(q, M_AHC)
    b.free(0, M_AHC)
    assert M_AHC.inuse == 0 and M_AHC.desc == "ahc driver"


@pytest.mark.parametrize("backend", BACKENDS)
def test_freebsd4_vm_zone(backend):
    b = bsd.FreeBSD4(kalloc.boot(backend))
    z = b.zinit("VNODE", 200, 0, 0, 1)
    items = [b.zalloc(z) for _ in range(30)]
    assert len(set(items)) == 30 and all(b.k.vm.is_mapped(i) for i in items)
    for i in items:
        b.zfree(z, i)
    with pytest.raises(kalloc.KernelPanic):
        b.zfree(z, items[0])
