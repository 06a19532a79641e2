"""Allocator backends: slab (DragonFly 2003), kmem_map (FreeBSD 4.8), bump (reference)."""
