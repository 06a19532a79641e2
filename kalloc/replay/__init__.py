"""Replay real Linux slab allocation traces (``kmem:*`` tracepoints).

``kalloc.replay.parse`` turns ``perf script`` or ftrace text into a stream of allocation
and free events; ``kalloc.replay.rules`` turns that stream into the malloc/free operations
a simulator replays, and counts what it saw (``count_trace``: the counts alone).  Both
depend only on the Python standard library; ``kalloc.replay.run`` drives a simulated
kernel with them.
"""
