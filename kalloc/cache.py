"""Object caches in the kernel API: ``cache_create``, ``cache_alloc``, ``cache_free``, ``cache_destroy``.

An object cache (Bonwick 1994) hands out objects of one size, aligned as asked, from memory
it keeps for that size alone::

    dentries = k.cache_create("dentry", 192, flags=SLAB_RECLAIM_ACCOUNT)
    d = k.cache_alloc(dentries, M_WAITOK | M_ZERO, cpu=1)
    k.cache_free(dentries, d, cpu=0)
    k.cache_destroy(dentries)           # KernelPanic while objects are live

Each backend does it the way its system did (docs/backends.md, "Object caches"):

* ``slub``: natively, a ``struct kmem_cache`` of its own, with the geometry
  ``calculate_sizes`` gives it (kalloc.backends.slub);
* ``kmem_map``: FreeBSD 4.8's ``vm_zone`` (``zinit``/``zalloc``/``zfree``, kalloc.vm_zone);
  4.8 has no ``zdestroy``, so a destroyed cache's zone keeps its pages, as every zone does;
* ``slab`` and third-party backends: the base class's default, malloc with one malloc type
  per cache, named after it (DragonFly BSD 2003 had no object caches; its drivers did
  exactly that).  The object's slot is the malloc of ``size`` rounded up to ``align``.

Flags are Linux's ``SLAB_*`` of v6.18 (include/linux/slab.h, ``enum _slab_flag_bits``: each
flag's bit depends on the kernel config; kalloc's is a distribution's x86_64 one, the
config of the machine that recorded tests/traces/).  ``slab_flag_values`` computes them;
kalloc_compat.linux exports them.  A backend takes the flags its system had a meaning for
(slub: all of them, for the geometry; the others: none, alignment comes from ``align``)
and ignores the rest.  A constructor ``ctor(kernel, addr)`` runs when an object is first
made: for slub when its slab is populated (``setup_object``), elsewhere at each
``cache_alloc`` (zones and malloc keep no constructed state).

Misuse is caught as for malloc, whatever the backend: an address that is no live object
of the cache raises ``cache_misuse``'s answer (``WrongType`` for another cache's object or
a malloc'd block, ``DoubleFree`` for a free object of this cache, ``WildFree`` otherwise);
``free()`` of a slub cache object is a ``WrongType`` too.  ``stats()["caches"]`` has a row
per live cache (``ROW_KEYS``, /sys/kernel/slab's names); what a backend cannot attribute to
one cache (objects per slab of a malloc class shared with every malloc of that size) is
``None``.
"""

from __future__ import annotations

from attrs import define, field

from kalloc.errors import BadFree, DoubleFree, KernelPanic, WildFree, WrongType

# include/linux/slab.h: enum _slab_flag_bits, in order; a flag whose config option is off
# takes no bit (it is 0, as __SLAB_FLAG_UNUSED).  kalloc's config: a distribution's x86_64.
CONFIG = {"DEBUG_OBJECTS": False, "FAILSLAB": False, "MEMCG": True, "KASAN_GENERIC": False,
          "KFENCE": True, "SLUB_TINY": False, "ZONE_DMA": True}
_FLAG_BITS = (("CONSISTENCY_CHECKS", None), ("RED_ZONE", None), ("POISON", None), ("KMALLOC", None),
              ("HWCACHE_ALIGN", None), ("CACHE_DMA", None), ("CACHE_DMA32", None), ("STORE_USER", None),
              ("PANIC", None), ("TYPESAFE_BY_RCU", None), ("TRACE", None), ("DEBUG_OBJECTS", "DEBUG_OBJECTS"),
              ("NOLEAKTRACE", None), ("NO_MERGE", None), ("FAILSLAB", "FAILSLAB"), ("ACCOUNT", "MEMCG"),
              ("KASAN", "KASAN_GENERIC"), ("NO_USER_FLAGS", None), ("SKIP_KFENCE", "KFENCE"),
              ("RECLAIM_ACCOUNT", "!SLUB_TINY"), ("OBJECT_POISON", None), ("CMPXCHG_DOUBLE", None),
              ("NO_OBJ_EXT", None))


def slab_flag_values(config: dict = CONFIG) -> dict:
    """SLAB_* name -> value: the enum's bits in order, configured-out ones skipped (0)."""
    out, bit = {}, 0
    for name, needs in _FLAG_BITS:
        on = needs is None or (not config[needs[1:]] if needs.startswith("!") else config[needs])
        out["SLAB_" + name] = 1 << bit if on else 0
        bit += on
    return out


SLAB = slab_flag_values()
SLAB_KMALLOC = SLAB["SLAB_KMALLOC"]          # kmalloc's own caches: not for cache_create
# What kmem_cache_create takes (SLAB_FLAGS_PERMITTED: everything but the internal ones).
PERMITTED = 0
for _name, _value in SLAB.items():
    if _name not in ("SLAB_KMALLOC", "SLAB_OBJECT_POISON", "SLAB_CMPXCHG_DOUBLE", "SLAB_NO_OBJ_EXT"):
        PERMITTED |= _value
del _name, _value

MAX_OBJECT_SIZE = 4 << 20                     # KMALLOC_MAX_SIZE on x86: an order-10 slab
ROW_KEYS = ("name", "object_size", "slab_size", "align", "objs_per_slab", "order", "active_objs",
            "num_objs", "active_slabs", "num_slabs")


@define(slots=True, eq=False, repr=False)
class Cache:
    """One object cache of one kernel: what cache_create was given, the malloc type its
    objects are charged to (slub and the malloc default), the backend's structure
    (``impl``) and the live objects."""

    kernel: object
    name: str
    object_size: int
    align: int
    flags: int
    ctor: object
    mtype: object
    impl: object = None
    live: set = field(factory=set)
    destroyed: bool = False

    def __repr__(self) -> str:
        return f"<Cache {self.name} size={self.object_size} live={len(self.live)}>"


def new_cache(kernel, name, size, align, flags, ctor) -> Cache:
    """cache_create's checks, then the Cache, registered in ``kernel.caches``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"cache_create: name must be a non-empty string, got {name!r}")
    if name in kernel.caches:
        raise ValueError(f"cache_create({name!r}): a cache of that name exists (cache_destroy it first)")
    for what, v, lo, hi in (("size", size, 1, MAX_OBJECT_SIZE), ("align", align, 0, 4096)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"cache_create({name!r}): {what} must be an int, not {type(v).__name__}")
        if not lo <= v <= hi:
            raise ValueError(f"cache_create({name!r}): {what} {v} out of range [{lo}, {hi}]")
    if align & (align - 1):
        raise ValueError(f"cache_create({name!r}): align {align} is not a power of two")
    if isinstance(flags, bool) or not isinstance(flags, int) or flags < 0 or flags & ~PERMITTED:
        raise ValueError(f"cache_create({name!r}): flags {flags!r} are not SLAB_* flags of "
                         f"kalloc_compat.linux (SLAB_FLAGS_PERMITTED)")
    if ctor is not None and not callable(ctor):
        raise TypeError(f"cache_create({name!r}): ctor must be callable or None, not {type(ctor).__name__}")
    c = Cache(kernel, name, size, align, flags, ctor, kernel.malloc_type(name, f"cache {name}"))
    kernel.caches[name] = c
    return c


def check_cache(kernel, cache, what: str) -> None:
    """The cache argument of cache_alloc/free/destroy: a live Cache of this kernel."""
    if cache.__class__ is not Cache:
        raise TypeError(f"{what}: cache must be a kalloc Cache from cache_create, not {type(cache).__name__}")
    if cache.kernel is not kernel:
        raise ValueError(f"{what}: cache {cache.name!r} belongs to another kernel")
    if cache.destroyed:
        raise KernelPanic(f"{what}: cache {cache.name!r} was destroyed (use after kmem_cache_destroy)")


def cache_misuse(kernel, cache: Cache, addr, what: str = "cache_free"):
    """Why ``addr`` is no live object of ``cache``: the exception to raise.  A live malloc'd
    block is one the backend's ``usable_size`` answers for (its contract: a BadFree for
    anything else); ``cache_was_object`` tells a free object of the cache (a double free)
    from a stranger."""
    if addr.__class__ is not int:
        return WildFree(f"{what}({cache.name}): address must be an int, not {type(addr).__name__}", None)
    for other in kernel.caches.values():
        if addr in other.live:
            return WrongType(f"{what}({cache.name}): {addr:#x} is an object of cache '{other.name}' "
                             f"(cache_from_obj: wrong slab cache)", addr)
    try:
        kernel.backend.usable_size(addr)
    except BadFree:
        pass
    else:
        return WrongType(f"{what}({cache.name}): {addr:#x} was allocated by malloc, not from this cache", addr)
    if kernel.backend.cache_was_object(cache, addr):
        return DoubleFree(f"{what}({cache.name}): {addr:#x} is already free: double free", addr)
    return WildFree(f"{what}({cache.name}): {addr:#x} was never allocated from this cache: wild pointer", addr)


def check_destroy(kernel, cache: Cache) -> None:
    """cache_destroy's checks: a live cache with no live object (else the kernel's panic)."""
    check_cache(kernel, cache, "cache_destroy")
    if cache.live:
        raise KernelPanic(f"kmem_cache_destroy {cache.name}: Slab cache still has objects "
                          f"({len(cache.live)} live)")


def forget(kernel, cache: Cache) -> None:
    """The end of cache_destroy: the cache is gone from the kernel."""
    cache.destroyed = True
    del kernel.caches[cache.name]
