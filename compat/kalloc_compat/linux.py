"""Linux slab API on top of any kalloc backend: kmalloc, kzalloc, kcalloc, krealloc, kfree,
ksize, kmem_cache_create/alloc/free/destroy, and the GFP constants.

So a driver model written against Linux -- and a real Linux allocation trace (kalloc.replay)
-- runs unchanged on the DragonFly slab, the FreeBSD 4 buckets or a third-party backend::

    lx = Linux(kalloc.boot("kmem_map", ncpus=2))
    p = lx.kmalloc(100, GFP_KERNEL)
    cache = lx.kmem_cache_create("dentry", 192)
    d = lx.kmem_cache_alloc(cache, GFP_KERNEL | __GFP_ZERO, cpu=1)

The mapping onto malloc(9) (docs/replay.md uses the same rules):

* GFP flags: a request that may enter direct reclaim (``__GFP_DIRECT_RECLAIM``, part of
  GFP_KERNEL, GFP_NOFS, GFP_NOIO, GFP_USER) or must not fail (``__GFP_NOFAIL``) is
  ``M_WAITOK``; anything else (GFP_ATOMIC, GFP_NOWAIT) is ``M_NOWAIT``; ``__GFP_ZERO`` adds
  ``M_ZERO``.  Flag values are those of ``include/linux/gfp_types.h`` since Linux 6.3, which
  dropped ``__GFP_ATOMIC`` (0x200, in ``GFP_ATOMIC`` until then: 6.1's ``GFP_ATOMIC`` is
  0xa20, not 0x820); the other bits are the same in 6.1, and 0x200 never allowed
  sleeping, so a mask from either maps to the same malloc(9) flags.
* malloc types: a cache's objects are charged to a type named after the cache; kmalloc
  memory to the type named by ``site`` (the caller's function; "kmalloc" by default).
  Linux's kfree takes no type, so the shim remembers each pointer's type.
* ``kmalloc(0)`` returns ``ZERO_SIZE_PTR`` (16) without calling the allocator, and
  kfree of NULL or ZERO_SIZE_PTR does nothing, as in Linux.

* caches are the kernel's object caches (``k.cache_create``, kalloc.cache), made as the
  backend's system made them (slub natively, kmem_map as vm_zones, slab as malloc types);
  the ``SLAB_*`` flags are 6.18's values for kalloc's config (kalloc.cache).
* kmalloc on a backend that picks kmalloc kinds by GFP bits (slub's ``malloc_gfp``) passes
  them on: ``__GFP_ACCOUNT`` memory comes from kmalloc-cg-*, as in Linux.

XXX not modelled: NUMA nodes.
"""

from __future__ import annotations

from kalloc.cache import SLAB
from kalloc.errors import KernelPanic, WildFree
from kalloc.flags import NOWAIT, WAITOK, ZERO

# include/linux/gfp_types.h (6.3 and later; 0x200 was __GFP_ATOMIC before 6.3)
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_ZERO = 0x100
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000
__GFP_NOFAIL = 0x8000
__GFP_NORETRY = 0x10000
__GFP_MEMALLOC = 0x20000
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000
__GFP_ACCOUNT = 0x400000
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE

# include/linux/slab.h (v6.18): SLAB_HWCACHE_ALIGN, SLAB_TYPESAFE_BY_RCU, SLAB_ACCOUNT, ...
globals().update(SLAB)

GFP_NAMES = {name: value for name, value in globals().items()
             if name.startswith(("GFP_", "__GFP_")) and isinstance(value, int)}

_GFP_ZERO = __GFP_ZERO  # for use inside classes, where __names are mangled

ZERO_SIZE_PTR = 16
KMALLOC_MAX_SIZE = 4 << 20  # 4 MiB: the x86 kmalloc ceiling (MAX_ORDER pages)


def gfp_value(text: str) -> int:
    """'GFP_KERNEL|__GFP_ZERO' (as tracepoints print it) or '0xcc0' -> the bits."""
    text = text.strip()
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    value = 0
    for part in text.split("|"):
        bits = GFP_NAMES.get(part.strip())
        if bits is None:
            raise ValueError(f"unknown gfp flag {part.strip()!r}")
        value |= bits
    return value


def gfp_to_flags(gfp: int) -> int:
    """Linux gfp bits -> kalloc malloc flags (plain int)."""
    may_sleep = gfp & (__GFP_DIRECT_RECLAIM | __GFP_NOFAIL)
    return (WAITOK if may_sleep else NOWAIT) | (ZERO if gfp & __GFP_ZERO else 0)


class Linux:
    """The Linux slab API on one kalloc kernel."""

    def __init__(self, kernel, cpu: int = 0):
        self.k = kernel
        self.cpu = cpu
        self.owner: dict = {}    # ptr -> (mtype, cache or None)

    def _alloc(self, size: int, gfp: int, mtype, cpu) -> int | None:
        if size > KMALLOC_MAX_SIZE:
            return None  # Linux warns and fails over-sized kmalloc
        cpu = self.cpu if cpu is None else cpu
        by_gfp = getattr(self.k.backend, "malloc_gfp", None)
        if by_gfp is not None:
            ptr = by_gfp(size, mtype, gfp, gfp_to_flags(gfp), cpu)
        else:
            ptr = self.k.malloc(size, mtype, gfp_to_flags(gfp), cpu)
        if ptr is not None:
            self.owner[ptr] = (mtype, None)
        return ptr

    def kmalloc(self, size: int, gfp: int = GFP_KERNEL, cpu: int | None = None, site: str = "kmalloc"):
        if size == 0:
            return ZERO_SIZE_PTR
        return self._alloc(size, gfp, self.k.malloc_type(site), cpu)

    def kzalloc(self, size: int, gfp: int = GFP_KERNEL, cpu: int | None = None, site: str = "kmalloc"):
        return self.kmalloc(size, gfp | _GFP_ZERO, cpu, site)

    def kcalloc(self, n: int, size: int, gfp: int = GFP_KERNEL, cpu: int | None = None, site: str = "kmalloc"):
        if size and n > (1 << 64) // size:
            return None  # overflow: Linux returns NULL
        return self.kmalloc(n * size, gfp | _GFP_ZERO, cpu, site)

    def kfree(self, ptr, cpu: int | None = None) -> None:
        if ptr in (0, None, ZERO_SIZE_PTR):
            return
        rec = self.owner.get(ptr)
        if rec is None:
            raise WildFree(f"kfree: {ptr:#x} was not allocated through this Linux shim", ptr)
        if rec[1] is not None:
            raise KernelPanic(f"kfree: {ptr:#x} belongs to kmem_cache '{rec[1].name}': use kmem_cache_free")
        del self.owner[ptr]
        self.k.free(ptr, rec[0], self.cpu if cpu is None else cpu)

    def ksize(self, ptr) -> int:
        return 0 if ptr == ZERO_SIZE_PTR else self.k.usable_size(ptr)

    def krealloc(self, ptr, new_size: int, gfp: int = GFP_KERNEL, cpu: int | None = None, site: str = "kmalloc"):
        """Linux semantics: the same pointer when ksize() already covers new_size."""
        if ptr in (0, None, ZERO_SIZE_PTR):
            return self.kmalloc(new_size, gfp, cpu, site)
        if new_size == 0:
            self.kfree(ptr, cpu)
            return ZERO_SIZE_PTR
        old = self.ksize(ptr)
        if old >= new_size:
            return ptr
        new = self._alloc(new_size, gfp, self.owner[ptr][0], cpu)
        if new is not None:
            self.k.vm.copy(new, ptr, old)
            self.kfree(ptr, cpu)
        return new

    # --- caches: the kernel's object caches (kalloc.cache), SLAB_* flags as above ----------------
    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0, ctor=None):
        """kmem_cache_create: a kalloc Cache, made the way the backend's system made caches."""
        return self.k.cache_create(name, size, align, flags, ctor)

    def kmem_cache_alloc(self, cache, gfp: int = GFP_KERNEL, cpu: int | None = None):
        ptr = self.k.cache_alloc(cache, gfp_to_flags(gfp), self.cpu if cpu is None else cpu)
        if ptr is not None:
            self.owner[ptr] = (cache.mtype, cache)
        return ptr

    def kmem_cache_zalloc(self, cache, gfp: int = GFP_KERNEL, cpu: int | None = None):
        return self.kmem_cache_alloc(cache, gfp | _GFP_ZERO, cpu)

    def kmem_cache_free(self, cache, ptr, cpu: int | None = None) -> None:
        self.k.cache_free(cache, ptr, self.cpu if cpu is None else cpu)
        del self.owner[ptr]

    def kmem_cache_destroy(self, cache) -> None:
        self.k.cache_destroy(cache)
