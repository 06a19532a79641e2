"""Cache-line ownership: which CPU's cache holds a line that several CPUs write.

A line written by one CPU and then by another moves between their caches: the second CPU
misses, and the line is fetched from the first one's cache (MESI: the line was Modified
there).  On the 2003 machines that is a transfer over the front-side bus, the price of the
lock hand-off (``coherence_miss`` in kalloc.costs, docs/cost-model.md).

kalloc models the lines CPUs really share in the two allocators (docs/research/mechanisms.md):

* the malloc_type counters (``ks_inuse``, ``ks_memuse``, ``ks_calls``): global and updated
  without a lock on the 2003 slab (per-CPU from 2003-10-18: slab option
  ``percpu_type_stats``), global under the MP lock on kmem_map;
* kmem_map's bucket heads (``kb_next``, ``kb_calls``, ``kb_totalfree``) and the
  ``kmemusage`` entry of the chunk's page (16 entries to a 64-byte line);
* a chunk freed on one CPU and handed out again on another: its first line is in the
  freeing CPU's cache (the free wrote its link or the user its data), and the new user
  misses.  The harness counts this one for every backend, from the CPUs of the free and
  of the malloc.

The model is ownership only: a touch by a CPU that is not the line's last toucher is one
miss and makes it the owner; reads are not told from writes (a read of a line another CPU
holds Modified misses too, and the next write there is counted again: an upper bound of
a line's traffic by one upgrade at most).  Keys are any hashable naming the line (a
MallocType, a bucket, an address >> 6).  At one CPU nothing can miss, so backends keep no
LineModel there (``touch`` is None) and pay nothing.
"""

from __future__ import annotations


class LineModel:
    """Owners of shared lines and the misses their moves cost."""

    __slots__ = ("owner", "misses")

    def __init__(self) -> None:
        self.owner: dict = {}
        self.misses = 0

    def touch(self, key, cpu: int) -> None:
        """``cpu`` writes the line ``key``: a miss if another CPU wrote it last."""
        owner = self.owner
        was = owner.get(key, cpu)
        if was != cpu:
            self.misses += 1
        owner[key] = cpu

    def take(self, key, cpu: int) -> bool:
        """``cpu`` takes the line ``key`` with an atomic operation priced as a whole (a
        remote compare-and-swap, ``remote_cas``): whether another CPU wrote it last.  The
        move is in that price, so it is not counted as a miss too."""
        owner = self.owner
        was = owner.get(key, cpu)
        owner[key] = cpu
        return was != cpu
