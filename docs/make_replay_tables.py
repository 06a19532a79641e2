"""Regenerate the tables of docs/replay.md from the traces: `python docs/make_replay_tables.py`.

Each table sits between ``<!-- make_replay_tables: NAME -->`` and ``<!-- end -->`` in
docs/replay.md; this script counts the traces in tests/traces/ with today's parser and
replay rules (kalloc.replay.rules.count_trace) and rewrites what is between the markers, so
the page shows what the code counts.  ``--check`` only compares, and fails if the page is
stale (the test suite runs it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from kalloc.replay.rules import count_trace

DOCS = Path(__file__).resolve().parent
PAGE = DOCS / "replay.md"
TRACES = DOCS.parent / "tests" / "traces"
NAMES = ("build", "exec", "fs")
# (row title, the cell of one trace's counts)
ROWS = (
    ("events", lambda c: f"{c['events']:,}"),
    ("allocs / frees", lambda c: f"{c['allocs']:,} / {c['frees']:,}"),
    ("null frees", lambda c: f"{c['null_frees']:,}"),
    ("unknown frees", lambda c: f"{c['unknown_frees']:,}"),
    ("implicit frees", lambda c: f"{c['implicit_frees']:,}"),
    ("live at the end", lambda c: f"{c['live_end']:,}"),
    ("peak live requested", lambda c: f"{c['peak_live_requested_bytes']:,} B"),
    ("cross-CPU frees", lambda c: f"{c['cross_cpu_frees']:,}"),
)
_BLOCK = re.compile(r"(<!-- make_replay_tables: ([\w-]+) -->\n)(.*?)(<!-- end -->)", re.S)


def trace_contents() -> str:
    """The table "What the traces in tests/traces/ contain"."""
    counts = [count_trace(TRACES / f"{n}.perf.txt.xz").as_dict() for n in NAMES]
    lines = ["| | " + " | ".join(NAMES) + " |", "|---" * (len(NAMES) + 1) + "|"]
    lines += [f"| {title} | " + " | ".join(cell(c) for c in counts) + " |" for title, cell in ROWS]
    return "\n".join(lines) + "\n"


TABLES = {"trace-contents": trace_contents}


def regenerate(text: str) -> str:
    """``text`` with every marked table replaced by its generated version."""
    return _BLOCK.sub(lambda m: m.group(1) + TABLES[m.group(2)]() + m.group(4), text)


def main(argv: list) -> int:
    old = PAGE.read_text()
    new = regenerate(old)
    if "--check" in argv:
        if new != old:
            sys.stderr.write(f"{PAGE} is stale: run python docs/make_replay_tables.py\n")
            return 1
        return 0
    PAGE.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
