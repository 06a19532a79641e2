"""The unpriced driver: a workload's threads and its backend with no harness around them.

What a run costs that no harness can save: each thread's generator steps, the workload's own
code and random numbers, and every allocator operation the backend does (its IPI handlers
included: with no harness installed, ``machine.send_ipi`` runs the handler before it returns).
The threads run in virtual-time order from a heap, as the harness runs them, each operation
taking a fixed 100 cycles; nothing is priced, timed, locked, counted or recorded, and the
footprint, latency and per-CPU figures a run reports do not exist here.  An operation's
result goes back to its thread exactly as the harness sends it (a handle, None, an item of a
queue), so the backend sees the same kind of stream; it is not the same stream, since the
interleaving of CPUs follows other times.

``test_harness_speed`` measures a run against this floor: (priced - unpriced) / bare is the
harness's own cost per operation in bare backend operations, the part its design decides.
"""

from heapq import heappop, heappush
from itertools import count

import kalloc
from kalloc import plugins
from kalloc.cache import Cache
from kalloc.workload import (CACHE_ALLOC, CALL, FREE, GET, IDLE, MALLOC, PUT, READ, REALLOC, WORK, WRITE, Context,
                             resolve_params)

OP_CYCLES = 100


def run_unpriced(backend: str, workload: str, ncpus: int, seed: int = 0) -> int:
    """Run the workload's default stream on a fresh kernel; returns its allocator operations
    (malloc, cache_alloc, free, realloc)."""
    cls = plugins.workload_class(workload)
    k = kalloc.boot(backend, ncpus=ncpus, seed=seed)
    ctx = Context(workload, resolve_params(cls, {}), ncpus, seed)
    mtypes, caches, handles, waiters = {}, {}, {}, {}
    heap, seq, clock = [], count(), [0] * ncpus
    next_handle = nops = 0
    for cpu, _, gen in cls().threads(ctx):
        heappush(heap, (0, next(seq), cpu, gen, None))
    while heap:
        t, _, cpu, gen, value = heappop(heap)
        t = max(t, clock[cpu])
        while gen is not None:
            try:
                op = gen.send(value)
            except StopIteration:
                gen = None
                break
            code, value = op[0], None
            if code in (MALLOC, CACHE_ALLOC, REALLOC):
                if code == MALLOC:
                    owner = mtypes.get(op[2]) or mtypes.setdefault(op[2], k.malloc_type(op[2]))
                    addr = k.malloc(op[1], owner, op[3], cpu)
                elif code == CACHE_ALLOC:
                    owner = caches.get(op[1]) or caches.setdefault(op[1], k.cache_create(op[1], op[2], op[4], op[5]))
                    addr = k.cache_alloc(owner, op[3], cpu)
                else:
                    old, owner = handles.pop(op[1])
                    addr = k.realloc(old, op[2], owner, op[3], cpu)
                if addr is not None:
                    handles[next_handle] = addr, owner
                    value, next_handle = next_handle, next_handle + 1
            elif code == FREE:
                addr, owner = handles.pop(op[1])
                if owner.__class__ is Cache:
                    k.cache_free(owner, addr, cpu)
                else:
                    k.free(addr, owner, cpu)
            elif code in (WORK, IDLE):
                t += op[1]
                continue
            elif code == WRITE:
                k.write(handles[op[1]][0], op[2])
                continue
            elif code == READ:
                value = k.read(handles[op[1]][0], op[2])
                continue
            elif code == PUT:
                sleeper = waiters.get(id(op[1]))
                if sleeper:
                    g, c = sleeper.pop(0)
                    heappush(heap, (max(t, clock[c]), next(seq), c, g, op[2]))
                else:
                    op[1].append(op[2])
                continue
            elif code == GET:
                if op[1]:
                    value = op[1].popleft()
                    continue
                waiters.setdefault(id(op[1]), []).append((gen, cpu))
                gen = None
                break
            elif code == CALL:
                value = op[1](k, *op[2])
                continue
            nops += 1                            # an allocator operation: the thread's turn ends
            t += OP_CYCLES
            break
        clock[cpu] = t
        if gen is not None:
            heappush(heap, (t, next(seq), cpu, gen, value))
    return nops
