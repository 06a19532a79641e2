"""Parse Linux slab tracepoint text (``perf script``, ftrace or ``trace-cmd report``) into events.

What the kernel records
-----------------------
Linux's slab allocator fires six tracepoints of the ``kmem`` subsystem: ``kmalloc``,
``kmalloc_node``, ``kmem_cache_alloc`` and ``kmem_cache_alloc_node`` when an object is handed
out, ``kfree`` and ``kmem_cache_free`` when it comes back (recent kernels fold the ``_node``
variants into the plain ones).  Two tools print them as text, one event a line.

``perf script`` (``perf record -e 'kmem:*' -a``)::

    <comm> <pid> [<cpu>] <seconds>: kmem:<event>: <fields>
            perf  3286 [000]  1588.589790:          kmem:kmalloc: call_site=sched_setaffinity+0x10c ptr=0xffff888102bc56c0 bytes_req=32 bytes_alloc=32 gfp_flags=GFP_KERNEL node=-1 accounted=false
            perf  3286 [001]  1588.589875:  kmem:kmem_cache_free: call_site=do_sys_openat2+0x88 ptr=0xffff888100879000 name=names_cache

ftrace (``/sys/kernel/tracing/trace``: a ``#`` header, then the events; ``trace_pipe`` is the
same without the header), with an optional column of irq/preempt flags::

    <comm>-<pid> [<cpu>] <flags> <seconds>: <event>: <fields>
           <...>-1234    [001] d..1.  5042.123456: kmalloc: call_site=foo+0x12/0x40 ptr=00000000deadbeef bytes_req=64 bytes_alloc=64 gfp_flags=GFP_KERNEL node=-1 accounted=false
            bash-2211    [000] .....  5042.123460: kfree: call_site=bar+0x5/0x30 ptr=00000000deadbeef

The fields were always ``call_site=`` then ``ptr=``.  Allocations continue with ``name=``
(cache events, recent kernels only), ``bytes_req=``, ``bytes_alloc=``, ``gfp_flags=`` and
then, depending on the kernel, ``node=`` and ``accounted=``; ``kmem_cache_free`` ends with
``name=`` on recent kernels.  ``call_site`` is ``func+0x10c`` (perf), ``func+0x12/0x40``
(ftrace; ``func+0x12/0x40 [ext4]`` for a module, which contains a space) or a raw address
``ffffffff8123abcd`` / ``0xffffffff8123abcd`` on old kernels.  ``ptr`` is ``0x...`` (perf),
bare hex (ftrace hashes pointers since 4.15), ``(nil)`` (perf) or ``(null)`` (ftrace before
4.15); every spelling of zero is NULL.

How a line is found and read
----------------------------
The command name comes first and may contain anything, spaces and digits included
(``kworker/u4:1-ev``, ``gmain 123``), so nothing is located by counting words from the left.
Two paths read a line.  ``parse_line`` is the general one: ``line.split(": ", 2)`` cuts
header, event name and fields (the first ``": "`` ends the timestamp, the second the event
name); the header's last word is the timestamp and the last ``[...]`` before it the CPU;
each field value runs from its key to the next key (``str.partition``).  ``events()`` first
tries a faster cut, because a trace repeats itself: three ``str.partition`` calls split a
line into the header up to the last six digits of the timestamp (command, pid, CPU and whole
seconds: it changes once a second per task), the text between the timestamp and ``" ptr="``
(event name and call site), the pointer, and everything after the pointer (sizes, GFP
flags, cache name).  Each piece but the pointer and the six digits is looked up in a dict
filled the first time the piece is seen, by the checks ``parse_line`` makes, so a line is
read by four dict lookups, ``int()`` of the pointer and of the six digits, and no regular
expression.  Any miss (a piece not seen before, a timestamp without six decimals, a
pointer that is not hex) sends the line to ``parse_line``, which decides; the test suite
checks that both paths read every line, damaged ones included, alike.
A line that split cannot place (a command name containing ``": "``, a perf period
column before the event name, a truncated line) goes to a regular expression that looks for
the event name anywhere, so a kmem event is never missed because its header looked odd.

Every line ends up in exactly one counter of ``TraceParser``:

* ``parsed``: a kmem event, returned as an event tuple;
* ``skipped``: not a kmem event: headers, blank lines, other tracepoints,
  ``CPU:1 [LOST 12 EVENTS]`` (lost events cannot be recovered: the replay rules cope with
  the frees and allocations they hide);
* ``unparsed``: a kmem event by name (``kmem:kfree:`` or ``kfree:`` as a word of its own)
  whose header or fields cannot be read: no ``ptr=``, a non-numeric size, a ``bytes_req``
  above ``bytes_alloc``, an empty ``name=``, a cut-off line, a CPU that is not a number, a
  timestamp that is not seconds as the tracers print them (digits, maybe a point and digits:
  ``1e30`` or ``inf`` is a damaged line, and one such would stretch the replay to its time).
  The first five are kept in ``unparsed_samples`` as ``(line_number, text)``, line numbers
  counted from 1.

Numbers are ASCII, on both paths: a timestamp, CPU, size or pointer written in other
Unicode digits (which ``int()`` would take) makes the line unparsed, and so does a
timestamp of more than 15 digits before the point (10^15 seconds: so that no replay
clock overflows).  A line longer than ``MAX_LINE`` characters (its newline included) is
unparsed too; ``open_trace`` reads no more of one than that, so an endless line
(``/dev/zero``) costs no memory.

No line makes the parser raise.  Lines that lack the ``[cpu]`` column (``perf script -F``
without ``cpu``, ftrace's latency format) are unparsed: replay needs the CPU.

The event tuple
---------------
An event is a plain tuple, the cheapest thing Python builds::

    (ts, cpu, kind, ptr, bytes_req, bytes_alloc, gfp, tname, call_site, cache)

``ts`` float seconds; ``cpu`` int; ``kind`` ``ALLOC`` or ``FREE``; ``ptr`` int, 0 for NULL;
``bytes_req`` and ``bytes_alloc`` ints (0 for frees); ``gfp`` the kalloc malloc flags the
``gfp_flags`` text maps to (0 for frees); ``tname`` the malloc type name: the cache name for
cache events (``name=``), and otherwise the function of the call site, ``call_site`` without
``+0x..`` and ``/0x..`` (a raw address stays as printed): for kmalloc/kfree, and for cache
events of kernels that do not print ``name=``, where a call site stands for its cache (one
type for all of them would put a kernel's whole slab under one type limit); ``call_site``
the raw text; ``cache`` whether it is a ``kmem_cache_*`` event (replay routes those to the
backend's object cache of that name).  ``EVENT_FIELDS`` names them.

GFP flags become malloc(9) flags
--------------------------------
The rule of ``kalloc_compat.linux``: a request that may sleep in direct reclaim
(``GFP_KERNEL``, ``GFP_KERNEL_ACCOUNT``, ``GFP_NOFS``, ``GFP_NOIO``, ``GFP_USER``,
``GFP_HIGHUSER*``, ``GFP_TRANSHUGE``, ``__GFP_RECLAIM``, ``__GFP_DIRECT_RECLAIM``, the pre-4.4
``__GFP_WAIT``) or must not fail (``__GFP_NOFAIL``) is ``M_WAITOK``; anything else
(``GFP_ATOMIC``, ``GFP_NOWAIT``, ``GFP_TRANSHUGE_LIGHT``, ``none``) is ``M_NOWAIT``;
``__GFP_ZERO`` adds ``M_ZERO``.  Kernels before 4.5 print the single flags without the
underscores (``GFP_KERNEL|GFP_ZERO``, ``GFP_WAIT``, ``GFP_NOFAIL``) and have ``GFP_TEMPORARY``;
they read alike.  A numeric mask (``gfp_flags=0xcc0``, printed by tools that
cannot decode the flags) is read with the bit values Linux has used since "mm: shuffle GFP_*
flags" (2019, Linux 5.x; still those of 6.x ``gfp_types.h``): ``__GFP_ZERO`` 0x100,
``__GFP_DIRECT_RECLAIM`` 0x400 and ``__GFP_NOFAIL`` 0x8000, so a mask and its spelling in names
map alike.  Older kernels numbered the bits differently (3.x and 4.x: ``__GFP_ZERO``
0x8000, reclaim 0x10, 0x400000 or 0x200000), so a numeric mask from such a kernel maps
wrongly; their tracepoints print names, which are safe.  Only a few dozen distinct strings
occur in a trace, so the mapping is cached per string: one dict lookup a line.

Order and the reorder window
----------------------------
Replay must see events in time order.  ``perf script`` sorts them, but ftrace prints each
CPU's ring buffer as it drains, so ``trace_pipe`` can run slightly out of order across CPUs.
``TraceParser.events`` holds back a window of ``window`` (default 4096) pending events kept
sorted by (timestamp, arrival): an in-order event (the common case) is appended in O(1), a
late one is inserted by binary search, and once the window is full the earliest pending event
is emitted.  This is a bounded priority queue; sorting the whole trace would need the whole
trace in memory, which a streaming replay must not.  The price of the bound: an event more
than ``window`` events late is emitted as soon as it arrives (after events with a later
timestamp that had already left), i.e. in arrival order.  Events with equal timestamps keep
their arrival order.
"""

from __future__ import annotations

import errno
import gzip
import io
import lzma
import os
import re
import sys
from bisect import insort
from collections import deque
from operator import itemgetter

try:
    import zstandard
except ImportError:  # optional: only .zst traces need it
    zstandard = None

ALLOC = 0
FREE = 1
EVENT_FIELDS = ("ts", "cpu", "kind", "ptr", "bytes_req", "bytes_alloc", "gfp", "tname", "call_site", "cache")

# kalloc's malloc(9) flag values (kalloc.flags), repeated so this module needs only the stdlib.
M_NOWAIT = 0x0001
M_WAITOK = 0x0002
M_ZERO = 0x0100

WINDOW = 4096
MAX_LINE = 8192           # characters: a kmem line is a few hundred
MAX_SECONDS_DIGITS = 15   # a timestamp's whole seconds: below 10**15 (and exact as a float)
MAX_SAMPLES = 5
SAMPLE_CHARS = 300        # an unparsed sample keeps at most this much of its line
_CACHE_LIMIT = 1 << 16    # per-string caches start over beyond this many entries

_KINDS = {
    "kmalloc": (ALLOC, False), "kmalloc_node": (ALLOC, False),
    "kmem_cache_alloc": (ALLOC, True), "kmem_cache_alloc_node": (ALLOC, True),
    "kfree": (FREE, False), "kmem_cache_free": (FREE, True),
}
# event name as printed -> (kind, is a cache event); ftrace omits the "kmem:" that perf prints
_EVENTS = {**_KINDS, **{"kmem:" + name: spec for name, spec in _KINDS.items()}}
# The slow path: a kmem event name standing alone, anywhere on the line.
_EVENT_RE = re.compile(r"(?<!\S)(?:kmem:)?(%s):(?:\s|$)" % "|".join(_KINDS))
_FUNCTION_RE = re.compile(r"[^+/\s]+")
# NULL as printed: "(nil)" by perf (libtraceevent), "(null)" by ftrace before 4.15's pointer
# hashing; 0x0, 0000000000000000 and 0 are zero anyway.
_NIL = frozenset(("(nil)", "(nil)\n", "(null)", "(null)\n"))
_TS = itemgetter(0)
_INF = float("inf")
_NOTHING = (-_INF,)             # a placeholder in the reorder window (see events)

_WAITING = frozenset({
    "GFP_KERNEL", "GFP_KERNEL_ACCOUNT", "GFP_NOFS", "GFP_NOIO", "GFP_USER", "GFP_TRANSHUGE",
    "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_NOFAIL", "__GFP_WAIT",
    "GFP_TEMPORARY", "GFP_WAIT", "GFP_NOFAIL",        # before 4.5: single flags without "__"
})
_ZEROING = frozenset({"__GFP_ZERO", "GFP_ZERO"})
_GFP_ZERO_BIT = 0x100
_GFP_WAIT_BITS = 0x400 | 0x8000   # __GFP_DIRECT_RECLAIM | __GFP_NOFAIL


def _digits(text: str) -> bool:
    """ASCII digits only, at least one: how the tracers print numbers."""
    return text.isdigit() and text.isascii()


def _number(text: str) -> int:
    """A decimal count as the tracers print it (ASCII digits: no sign, space, ``_`` or
    other Unicode digits, which ``int()`` would take)."""
    if not _digits(text):
        raise ValueError(f"{text[:20]!r} is not a number")
    return int(text)


def _hex(text: str) -> int:
    """ASCII hex digits, maybe after ``0x`` (no sign, space or ``_``, which ``int()`` takes)."""
    digits = text[2:] if text[:2] in ("0x", "0X") else text
    if not (digits.isascii() and digits.isalnum()):
        raise ValueError(f"{text[:20]!r} is not hex")
    return int(digits, 16)


def _pointer(text: str) -> int:
    """A pointer as the tracers print it: hex, or a spelling of NULL (0); the last field
    of a line keeps its line end."""
    return 0 if text in _NIL else _hex(text.rstrip("\r\n"))


def gfp_to_malloc_flags(text: str) -> int:
    """``gfp_flags`` as a tracepoint prints it -> kalloc malloc flags (plain int).

    ``"GFP_KERNEL|__GFP_ZERO"`` -> ``M_WAITOK | M_ZERO``; ``"GFP_ATOMIC"`` -> ``M_NOWAIT``;
    numeric parts (``"0xcc0"``) are read with the bit values described in the module docstring.
    Unknown names are ignored: they neither allow sleeping nor ask for zeroed memory.
    """
    waits = zero = False
    for part in text.strip().split("|"):
        if part[:2] in ("0x", "0X") or _digits(part):
            try:
                bits = _hex(part) if part[:2] in ("0x", "0X") else int(part)
            except ValueError:
                continue
            waits = waits or bool(bits & _GFP_WAIT_BITS)
            zero = zero or bool(bits & _GFP_ZERO_BIT)
        elif part in _WAITING or part.startswith("GFP_HIGHUSER"):
            waits = True
        elif part in _ZEROING:
            zero = True
    return (M_WAITOK if waits else M_NOWAIT) | (M_ZERO if zero else 0)


def call_site_function(call_site: str) -> str:
    """``"getname_flags.part.0+0x24"`` -> ``"getname_flags.part.0"``; raw addresses unchanged.

    Drops the ``+offset``, ``/size`` and `` [module]`` that ``%pS`` adds.  ValueError if empty.
    """
    match = _FUNCTION_RE.match(call_site.strip())
    if match is None:
        raise ValueError("empty call_site")
    return match.group()


def open_trace(path):
    """The lines of a trace file, as text; ``"-"`` is standard input.

    Chosen by suffix: ``.gz`` (gzip), ``.xz`` (lzma), ``.zst`` (zstandard, if installed),
    anything else plain text.  Decoded as UTF-8 with undecodable bytes replaced, streamed
    (never read whole).  The caller closes what it opened; closing the stream of ``"-"``
    leaves file descriptor 0 open.  A ``sys.stdin`` that is no file (a test's StringIO) is
    returned as it is, and must not be closed.
    """
    path = os.fspath(path)
    if path == "-":
        try:
            return Lines(open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False))
        except (AttributeError, OSError):      # io.UnsupportedOperation is an OSError
            return Lines(sys.stdin)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".zst" and zstandard is None:
        raise ValueError("reading .zst traces needs the 'zstandard' package: pip install zstandard")
    try:
        if suffix == ".gz":
            binary = gzip.open(path, "rb")
        elif suffix == ".xz":
            binary = io.BufferedReader(_XzReader(open(path, "rb")))
        elif suffix == ".zst":
            binary = zstandard.ZstdDecompressor().stream_reader(
                open(path, "rb"), read_across_frames=True, closefd=True)
        else:
            return Lines(open(path, encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "trace file not found", path) from None
    return Lines(io.TextIOWrapper(binary, encoding="utf-8", errors="replace"))


class Lines:
    """The lines of a text stream, none longer than MAX_LINE + 1 characters: of a longer
    line the rest is read and dropped in pieces, so that it holds no more memory (events()
    counts it unparsed).  ``close`` leaves ``sys.stdin`` open."""

    __slots__ = ("stream", "_readline")

    def __init__(self, stream):
        self.stream = stream
        self._readline = stream.readline

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self._readline(MAX_LINE + 1)
        if len(line) > MAX_LINE and line[-1] != "\n":
            while (rest := self._readline(MAX_LINE)) and rest[-1] != "\n":
                pass
        elif not line:
            raise StopIteration
        return line

    def readline(self, limit: int = MAX_LINE + 1) -> str:
        return self.stream.readline(limit)

    def close(self) -> None:
        if self.stream is not sys.stdin:
            self.stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _XzReader(io.RawIOBase):
    """.xz (or .lzma) streams one after another, then maybe NUL padding, and anything else
    after them an error: gzip's rule (lzma.open ignores trailing junk silently)."""

    def __init__(self, raw):
        self.raw = raw
        self.dec = lzma.LZMADecompressor()

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while True:
            if self.dec.eof:                       # a stream ended: the next one, or the end
                data = self.dec.unused_data.lstrip(b"\0")
                while not data:
                    data = self.raw.read(1 << 16)
                    if not data:
                        return 0
                    data = data.lstrip(b"\0")
                self.dec = lzma.LZMADecompressor()
            elif self.dec.needs_input:
                data = self.raw.read(1 << 16)
                if not data:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            else:
                data = b""
            out = self.dec.decompress(data, len(buf))
            if out:
                buf[:len(out)] = out
                return len(out)

    def close(self) -> None:
        self.raw.close()
        super().close()


class TraceParser:
    """Reads kmem events from trace lines, counting what it reads.

    ``events(lines)`` is the generator of event tuples in timestamp order;
    ``parse_line(line)`` reads one line.  The counters add up over every ``events`` call
    (``lines == parsed + skipped + unparsed``); ``lines`` and ``parsed`` are brought up to
    date when a generator finishes or is closed, the others as they change.
    """

    __slots__ = ("window", "lines", "parsed", "skipped", "unparsed", "unparsed_samples",
                 "_tokens", "_cpus", "_sites", "_gfp", "_heads", "_mids", "_tails")

    def __init__(self, window: int = WINDOW):
        if window < 0:
            raise ValueError(f"reorder window must be >= 0, not {window}")
        self.window = window
        self.lines = 0
        self.parsed = 0
        self.skipped = 0
        self.unparsed = 0
        self.unparsed_samples: list[tuple[int, str]] = []
        # Caches of the pieces that repeat, each filled by the _learn_* method that checks
        # the piece once.  parse_line: event name as printed (with perf's padding) -> (kind,
        # is a cache event); "call_site=..." -> (call_site, function); everything after
        # "gfp_flags=" -> malloc flags.  Both paths: header before the timestamp -> cpu.
        # The fast path of events(): the text between the timestamp's ": " and " ptr=" ->
        # (kind, call_site, its dict of the text after the pointer -> (bytes_req,
        # bytes_alloc, gfp, tname)).
        self._tokens: dict[str, tuple[int, bool]] = {}
        self._cpus: dict[str, int] = {}
        self._sites: dict[str, tuple[str, str]] = {}
        self._gfp: dict[str, int] = {}
        self._heads: dict[str, tuple[int, int, int]] = {}
        self._mids: dict[str, tuple[int, str, dict]] = {}
        self._tails = 0         # entries in all the dicts of _mids, bounded like each cache

    def events(self, lines):
        """Yield the event tuple of every kmem event in ``lines``, in timestamp order.

        Line numbers in ``unparsed_samples`` count from 1 in ``lines``.  Memory holds at most
        ``window`` pending events, whatever the length of the input.
        """
        window = self.window
        heads = self._heads
        mids = self._mids
        slow = self._learn
        # The window starts full of placeholders that sort first and are never yielded:
        # then every new event pushes exactly one item out, and no length test is needed.
        pending = deque([_NOTHING] * window)
        append = pending.append
        popleft = pending.popleft
        latest = -_INF          # the largest timestamp seen
        lineno = odd = 0        # odd: lines that were no event (skipped or unparsed)
        try:
            for lineno, line in enumerate(lines, 1):
                # The fast path (the module docstring explains the cut).  Any miss or oddity
                # (a piece not cached yet, a missing separator, a bad number) raises
                # KeyError or ValueError and the line goes through _learn and parse_line.
                try:
                    if len(line) > MAX_LINE:
                        raise ValueError
                    head, _, rest = line.partition(": ")
                    cpu, base, scale = heads[head[:-6]]
                    micros = head[-6:]
                    if not (micros.isdigit() and micros.isascii()):   # _digits, inline
                        raise ValueError
                    mid, _, rest = rest.partition(" ptr=")
                    kind, cache, call_site, tails = mids[mid]
                    ptr_text, sep, tail = rest.partition(" ")
                    bytes_req, bytes_alloc, gfp, tname = tails[tail or sep]
                    ptr = _pointer(ptr_text)
                    ts = (base + int(micros)) / scale
                    event = (ts, cpu, kind, ptr, bytes_req, bytes_alloc, gfp, tname, call_site, cache)
                except (KeyError, ValueError):
                    try:
                        event = slow(line)
                    except ValueError:
                        odd += 1
                        self.unparsed += 1
                        if len(self.unparsed_samples) < MAX_SAMPLES:
                            self.unparsed_samples.append((lineno, line.rstrip("\r\n")[:SAMPLE_CHARS]))
                        continue
                    if event is None:
                        odd += 1
                        self.skipped += 1
                        continue
                    ts = event[0]
                if ts >= latest:
                    latest = ts
                    append(event)
                else:
                    insort(pending, event, key=_TS)
                event = popleft()
                if event is not _NOTHING:
                    yield event
            for event in pending:
                if event is not _NOTHING:
                    yield event
        finally:
            self.lines += lineno
            self.parsed += lineno - odd

    def parse_line(self, line: str):
        """The event tuple on ``line``; None if it is no kmem event; ValueError if malformed."""
        if len(line) > MAX_LINE:
            raise ValueError(f"line longer than {MAX_LINE} characters")
        try:
            head, token, rest = line.split(": ", 2)
            kind, cache = self._tokens[token]
        except (ValueError, KeyError):   # fewer than two ": ", or a name not seen yet
            located = self._locate(line)
            if located is None:
                return None
            head, rest, kind, cache = located

        prefix, _, ts_text = head.rpartition(" ")
        cpu = self._cpus.get(prefix)
        if cpu is None:
            cpu = self._learn_cpu(prefix)
        whole, _, fraction = ts_text.partition(".")
        if not (_digits(whole) and (_digits(fraction) or not fraction)):
            raise ValueError(f"timestamp {ts_text!r} is not seconds as the tracers print them")
        if len(whole.lstrip("0")) > MAX_SECONDS_DIGITS:
            raise ValueError(f"timestamp {ts_text[:40]!r} out of range")
        ts = float(ts_text)
        site, sep, text = rest.partition(" ptr=")
        if not sep:
            raise ValueError("missing ptr=")
        call_site, function = self._sites.get(site) or self._learn_site(site)
        ptr_text, bytes_req, bytes_alloc, gfp, name = self._fields(kind, cache, text)
        ptr = _pointer(ptr_text)
        return (ts, cpu, kind, ptr, bytes_req, bytes_alloc, gfp,
                function if name is None else name, call_site, cache)

    def _fields(self, kind: int, cache: bool, text: str):
        """The fields after "ptr=": (pointer text, bytes_req, bytes_alloc, gfp, name), name
        None for kmalloc/kfree.  Each value runs from its key to the next key."""
        if kind == ALLOC:
            # partition() leaves the separator empty when the key is missing, and then
            # every later one too, so one test is enough.
            ptr_text, _, rest = text.partition(" bytes_req=")
            req_text, _, rest = rest.partition(" bytes_alloc=")
            alloc_text, sep, tail = rest.partition(" gfp_flags=")
            if not sep:
                raise ValueError("missing bytes_req=, bytes_alloc= or gfp_flags=")
            bytes_req = _number(req_text)
            bytes_alloc = _number(alloc_text)
            if not bytes_req <= bytes_alloc:    # the kernel never hands out less than asked
                raise ValueError("negative size, or bytes_req above bytes_alloc")
            gfp = self._gfp.get(tail)
            if gfp is None:
                gfp = self._learn_gfp(tail)
        else:
            ptr_text = text
            bytes_req = bytes_alloc = gfp = 0
        name = None
        if cache:
            ptr_text, sep, name = ptr_text.partition(" name=")
            if not sep:
                name = None                   # an older kernel: the call site's function
            elif not (name := name.strip()):
                raise ValueError("empty name=")
        return ptr_text, bytes_req, bytes_alloc, gfp, name

    def _locate(self, line: str):
        """The slow path for a line the fast path could not place: (header, fields, kind,
        is a cache event), or None if it is no kmem event."""
        parts = line.split(": ", 2)
        if len(parts) == 3:
            spec = _EVENTS.get(parts[1].lstrip(" "))
            if spec is not None:                  # perf pads the name: learn this padding
                self._remember(self._tokens, parts[1], spec)
                return parts[0], parts[2], *spec
        if not ("kmalloc" in line or "kfree" in line or "kmem_cache_" in line):
            return None
        match = _EVENT_RE.search(line)
        if match is None:
            return None
        colon = line.rfind(":", 0, match.start())
        if colon < 0:
            raise ValueError("no timestamp before the event name")
        return line[:colon], line[match.end():], *_KINDS[match.group(1)]

    def _learn(self, line: str):
        """parse_line for a line the fast path of events() could not read, after learning
        the pieces the fast path will need for the next line like it."""
        head, _, rest = line.partition(": ")
        mid, _, rest = rest.partition(" ptr=")
        ptr_text, sep, tail = rest.partition(" ")
        try:
            if head[:-6] not in self._heads:
                self._learn_head(head[:-6])
            entry = self._mids.get(mid) or self._learn_mid(mid)
            if (tail or sep) not in entry[3]:
                self._learn_tail(mid, entry[3], tail or sep)
        except ValueError:      # a piece the fast path cannot take: parse_line decides
            pass
        return self.parse_line(line)

    def _learn_mid(self, mid: str):
        """"kmem:kfree: call_site=f+0x4" (event name, maybe padded, and call site) ->
        (kind, is a cache event, call_site, {} to be filled by _learn_tail)."""
        kind, cache, call_site, _ = self._mid_spec(mid)
        return self._remember(self._mids, mid, (kind, cache, call_site, {}))

    def _mid_spec(self, mid: str):
        """(kind, is a cache event, call_site, function) of the text between the
        timestamp's ": " and " ptr="."""
        token, sep, site = mid.partition(": ")
        spec = _EVENTS.get(token.lstrip(" "))
        if not sep or spec is None:
            raise ValueError("no kmem event name before the call site")
        return (*spec, *(self._sites.get(site) or self._learn_site(site)))

    def _learn_tail(self, mid: str, tails: dict, key: str):
        """The fields after the pointer -> (bytes_req, bytes_alloc, gfp, tname), for events
        of ``mid``.  ``key`` is the text after the first space after "ptr=", or "" if the
        pointer runs to the end of the line.  Taken only if, with any pointer text without
        spaces before it, _fields would read exactly that pointer text: checked with "0"."""
        kind, cache, _, function = self._mid_spec(mid)
        ptr_text, bytes_req, bytes_alloc, gfp, name = self._fields(
            kind, cache, "0 " + key if key else "0")
        if ptr_text != "0":
            raise ValueError("more than the pointer before the next field")
        tname = function if name is None else name
        self._tails += 1
        if self._tails > _CACHE_LIMIT:      # the dicts of all call sites together
            self._tails = 1
            for entry in self._mids.values():
                entry[3].clear()
        tails[key] = value = (bytes_req, bytes_alloc, gfp, tname)
        return value

    def _learn_head(self, key: str):
        """The header up to the last six digits of the timestamp, "perf 12 [001] 1595.",
        -> (cpu, base, scale): the timestamp of the line is (base + int(last six digits)) /
        scale.  Exact: float() and the division of two ints both round the same rational
        number correctly.  Only for a timestamp of ASCII digits, "." and more digits."""
        prefix, _, seconds = key.rpartition(" ")
        whole, dot, fraction = seconds.partition(".")
        if not (dot and _digits(whole) and len(whole) <= MAX_SECONDS_DIGITS
                and (_digits(fraction) and len(fraction) <= 9 or not fraction)):
            raise ValueError("not a plain decimal timestamp")
        cpu = self._cpus.get(prefix)
        if cpu is None:
            cpu = self._learn_cpu(prefix)
        scale = 10 ** (len(fraction) + 6)
        return self._remember(self._heads, key, (cpu, int(whole + fraction) * 10 ** 6, scale))

    def _learn_cpu(self, prefix: str) -> int:
        """The cpu in the last [...] of the header before the timestamp."""
        bracket = prefix.rfind("[")
        close = prefix.find("]", bracket)
        text = prefix[bracket + 1:close]
        if bracket < 0 or close < 0 or not _digits(text):
            raise ValueError("no [cpu] before the timestamp")
        return self._remember(self._cpus, prefix, int(text))

    def _learn_site(self, site: str) -> tuple[str, str]:
        """"call_site=func+0x24" -> ("func+0x24", "func").  trace-cmd report's kmem plugin
        prints the call site resolved, then the raw field, after a padded event name:
        "    (func+0x24) call_site=ffffffff8112c3d5"; the resolved one is taken."""
        text = site.lstrip(" ")
        if text.startswith("("):
            resolved, sep, text = text[1:].partition(") ")
            if not (sep and resolved and text.startswith("call_site=")):
                raise ValueError("fields do not start with call_site=")
            return self._remember(self._sites, site, (resolved, call_site_function(resolved)))
        if not text.startswith("call_site="):
            raise ValueError("fields do not start with call_site=")
        call_site = text[10:]
        return self._remember(self._sites, site, (call_site, call_site_function(call_site)))

    def _learn_gfp(self, tail: str) -> int:
        """The malloc flags of the text after "gfp_flags=" (the flags, maybe node=, ...)."""
        text = tail.split(" ", 1)[0].strip()
        if not text:
            raise ValueError("empty gfp_flags=")
        return self._remember(self._gfp, tail, gfp_to_malloc_flags(text))

    @staticmethod
    def _remember(cache: dict, key: str, value):
        """Store ``value`` under ``key``, starting over if the cache has grown too big."""
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = value
        return value
