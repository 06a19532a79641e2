"""DMA for drivers: contigmalloc, ISA DMA bounce buffers and bus_dma, as in FreeBSD 4.8.

Deterministic: no clock, no randomness; the same calls give the same addresses.

A device that does DMA does not see the kernel's virtual addresses.  It sees physical
addresses, and an ISA device sees only 24 of their bits, so everything it touches must
lie below 16 MiB.  The kernel's allocators, however, hand out memory that is contiguous
in *virtual* address space only (kalloc.vm).  This package is the 4.8 answer:

    kalloc.dma.contig   contigmalloc/contigfree: a physically contiguous run of free
                        pages in [low, high), found by scanning the page array
                        (docs/research/kmem_map.md section 3)
    kalloc.dma.isa      the 8237 pair: isa_dmainit makes one bounce buffer per channel
                        below 16 MiB, isa_dmastart bounces a transfer that needs it
                        (section 4.1-4.4)
    kalloc.dma.busdma   tags, maps, segments and a pool of bounce pages (section 4.5)
    kalloc.dma.scenario the 2003 regression: slab zones eating low memory before a
                        late ISA driver asks for its bounce buffer (slab.md section 7)

Each kernel gets its own DMA state, attached lazily on first use (``kernel_state``):
nothing is added to ``Kernel`` and a kernel that never does DMA pays nothing.  The
state is keyed by the kernel's ``Machine`` in a WeakKeyDictionary (a ``Kernel`` has
``__slots__`` without ``__weakref__``; its machine belongs to it alone), so it dies with
the kernel.

``dma_stats(kernel)`` gathers the counters of whatever was used, for the run record.
"""

from __future__ import annotations

from weakref import WeakKeyDictionary

_TABLES: dict[type, WeakKeyDictionary] = {}


def kernel_state(kernel, cls):
    """This kernel's instance of the state class ``cls``, made on first use."""
    table = _TABLES.get(cls)
    if table is None:
        table = _TABLES[cls] = WeakKeyDictionary()
    state = table.get(kernel.machine)
    if state is None:
        state = table[kernel.machine] = cls()
    return state


def existing_state(kernel, cls):
    """This kernel's instance of ``cls``, or None if the kernel never used it."""
    table = _TABLES.get(cls)
    return None if table is None else table.get(kernel.machine)


def dma_stats(kernel) -> dict:
    """ISA DMA, bus_dma and contigmalloc counters of this kernel: a dict with a key per
    facility that was used ({} if the kernel never did DMA)."""
    out = {}
    for name, cls in (("contig", contig.ContigState), ("isa", isa.IsaDma), ("busdma", busdma.BusDma)):
        state = existing_state(kernel, cls)
        if state is not None:
            out[name] = state.stats()
    return out


# The submodules import kernel_state from here, so they come after it.
from kalloc.dma import busdma, contig, isa  # noqa: E402
from kalloc.dma.busdma import (BUS_DMA_ALLOCNOW, BUS_DMA_NOWAIT, BUS_DMA_WAITOK,  # noqa: E402
                               BUS_DMASYNC_POSTREAD, BUS_DMASYNC_POSTWRITE, BUS_DMASYNC_PREREAD,
                               BUS_DMASYNC_PREWRITE, BUS_SPACE_MAXADDR, BUS_SPACE_MAXADDR_24BIT,
                               bus_dma_tag_create, bus_dma_tag_destroy, bus_dmamap_create,
                               bus_dmamap_destroy, bus_dmamap_load, bus_dmamap_load_mbuf,
                               bus_dmamap_sync, bus_dmamap_unload, bus_dmamem_alloc, bus_dmamem_free,
                               busdma_swi)
from kalloc.dma.contig import (contigfree, contigmalloc, free_below, map_frames, phys_read,  # noqa: E402
                               phys_write, unmap_frames)
from kalloc.dma.isa import (ISADMA_RAW, ISADMA_READ, ISADMA_WRITE, device_transfer,  # noqa: E402
                            isa_dma, isa_dma_acquire, isa_dma_release, isa_dmadone, isa_dmainit,
                            isa_dmarangecheck, isa_dmastart, isa_dmastatus, isa_dmastop)

__all__ = [
    "BUS_DMASYNC_POSTREAD", "BUS_DMASYNC_POSTWRITE", "BUS_DMASYNC_PREREAD", "BUS_DMASYNC_PREWRITE",
    "BUS_DMA_ALLOCNOW", "BUS_DMA_NOWAIT", "BUS_DMA_WAITOK", "BUS_SPACE_MAXADDR",
    "BUS_SPACE_MAXADDR_24BIT", "ISADMA_RAW", "ISADMA_READ", "ISADMA_WRITE", "bus_dma_tag_create",
    "bus_dma_tag_destroy", "bus_dmamap_create", "bus_dmamap_destroy", "bus_dmamap_load",
    "bus_dmamap_load_mbuf", "bus_dmamap_sync", "bus_dmamap_unload", "bus_dmamem_alloc",
    "bus_dmamem_free", "busdma_swi", "contigfree", "contigmalloc", "device_transfer", "dma_stats",
    "free_below", "isa_dma", "isa_dma_acquire", "isa_dma_release", "isa_dmadone", "isa_dmainit",
    "isa_dmarangecheck", "isa_dmastart", "isa_dmastatus", "isa_dmastop", "map_frames", "phys_read",
    "phys_write", "unmap_frames",
]
