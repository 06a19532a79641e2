"""Issue 20, replay: nothing in the input makes the replay crash, hang, or count differently.

Numbers are ASCII on both paths of the parser, a line is at most MAX_LINE characters, a
timestamp has at most 15 digits of whole seconds, every compression refuses trailing
junk, and Ctrl-C during a pipelined replay is one line."""

import gzip
import itertools
import lzma
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kalloc.replay import parse
from kalloc.replay.parse import MAX_LINE, TraceParser, open_trace
from kalloc.replay.run import PIPELINE_OK, replay_trace
from test_replay_parse import reference_events as reference   # parse_line on each line alone

TRACES = Path(__file__).resolve().parent / "traces"
with open_trace(TRACES / "build.perf.txt.xz") as _f:
    REAL = [line for line in itertools.islice(_f, 3000) if "kmem:" in line][::15]
# Other scripts' digits, which str.isdigit and int() take: Arabic-Indic, fullwidth, Devanagari,
# mathematical bold.
DIGITS = ("٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "०१२३४५६७८९", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗")


def agree(lines) -> TraceParser:
    """events() (fast path, caches warm) reads ``lines`` exactly as the reference does."""
    parser = TraceParser(window=0)
    events = list(parser.events(lines))
    expected, unparsed = reference(lines)
    assert events == expected
    assert parser.unparsed == unparsed and parser.parsed == len(expected)
    assert parser.lines == parser.parsed + parser.skipped + parser.unparsed == len(lines)
    return parser


def _unicode_digits(line: str, positions: list, script: str) -> str:
    chars = list(line)
    digits = [i for i, c in enumerate(chars) if c.isascii() and c.isdigit()]
    for p in positions:
        i = digits[p % len(digits)]
        chars[i] = script[int(chars[i])]
    return "".join(chars)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(REAL), st.lists(st.integers(0, 200), min_size=1, max_size=4),
                          st.sampled_from(DIGITS)), min_size=1, max_size=8))
def test_fuzz_unicode_digits_read_alike_on_both_paths(mutations):
    """Each real line intact first (the fast path caches its pieces), then with some of its
    digits in another script: both paths refuse the number, whatever came before."""
    lines = []
    for line, positions, script in mutations:
        lines += [line, _unicode_digits(line, positions, script)]
    agree(lines)


@pytest.mark.parametrize("script", DIGITS)
def test_a_timestamp_in_other_digits_is_unparsed_after_its_ascii_twin(script):
    line = REAL[0]
    head, _, rest = line.partition(": ")
    micros = head[-6:]
    odd = head[:-6] + "".join(script[int(c)] for c in micros) + ": " + rest
    parser = agree([line, odd, odd])
    assert parser.unparsed == 2


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(REAL), st.integers(0, 250), st.integers(0, 250),
       st.text(alphabet=st.sampled_from(" :.0123456789abcdefx_+-[]=\n\r٣０\x1b\x00"), max_size=8),
       st.integers(0, 3))
def test_fuzz_damaged_real_lines_agree_and_never_raise(line, start, stop, insert, repeat):
    damaged = line[:start] + insert + line[stop:]
    agree([line] * repeat + [damaged, line, damaged])


@pytest.mark.parametrize("whole", ["9" * 16, "1" * 400, "123456789012345678"])
def test_a_timestamp_beyond_15_digits_is_unparsed_and_replay_goes_on(tmp_path, whole):
    big = REAL[1].replace(REAL[1].partition(": ")[0].rpartition(" ")[2], whole + ".000001", 1)
    agree([REAL[0], big, REAL[2]])
    path = tmp_path / "t.perf.txt"
    path.write_text("".join([REAL[0], big, REAL[2]]))
    rec = replay_trace(str(path), "slab", pipeline=False)
    assert rec["trace"]["unparsed"] == 1 and rec["panic"] is None


def test_the_largest_timestamp_replays_without_overflow(tmp_path):
    head = REAL[0].partition(": ")[0].rpartition(" ")[2]
    lines = [REAL[0].replace(head, "1.000000", 1), REAL[0].replace(head, "9" * 15 + ".999999", 1)]
    agree(lines)
    path = tmp_path / "t.perf.txt"
    path.write_text("".join(lines))
    rec = replay_trace(str(path), "slab", pipeline=False, costs={"clock_hz": 2 ** 63 - 1})
    assert rec["trace"]["unparsed"] == 0 and rec["ops"]["malloc"] == 2


def test_a_line_longer_than_max_line_is_unparsed_on_both_paths():
    long = REAL[0].rstrip("\n") + " " * (MAX_LINE - len(REAL[0]) + 1) + "\n"
    assert len(long) == MAX_LINE + 1
    exact = REAL[0].rstrip("\n") + " " * (MAX_LINE - len(REAL[0])) + "\n"
    parser = agree([REAL[0], long, exact])
    assert parser.unparsed == 1


def test_an_endless_line_costs_bounded_memory_and_counts_as_one(tmp_path):
    path = tmp_path / "t.perf.txt"
    with open(path, "w") as f:
        f.write(REAL[0])
        f.write("0" * (30 << 20))                   # 30 MiB without a newline
        f.write("\n" + REAL[1])
    tracemalloc.start()
    try:
        with open_trace(path) as lines:
            parser = TraceParser()
            events = list(parser.events(lines))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20
    assert (parser.lines, parser.parsed, parser.unparsed, len(events)) == (3, 2, 1, 2)
    assert len(parser.unparsed_samples[0][1]) <= parse.SAMPLE_CHARS


def test_dev_zero_is_read_in_bounded_memory():
    """An endless line never ends, so the reader keeps reading it: for two seconds here,
    in bounded memory."""
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc")
    code = ("import threading, os, re\n"
            "from kalloc.replay.parse import open_trace\n"
            "rss = lambda: int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])\n"
            "threading.Timer(2, lambda: (print(rss()), os._exit(0))).start()\n"
            "for _ in open_trace('/dev/zero'): pass\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert int(out) < 100_000                       # KiB now (maxrss would count the forked parent)


def _compressed(opener, text: str) -> bytes:
    return {"gz": gzip.compress, "xz": lzma.compress}[opener](text.encode())


@pytest.mark.parametrize("junk", [b"junk", b"\x00\x00junk", b"\xfd7zXZ\x00", b"\x1f\x8b"])
@pytest.mark.parametrize("suffix", ["gz", "xz"])
def test_trailing_junk_after_a_compressed_trace_is_an_error_for_every_compression(tmp_path, suffix, junk):
    path = tmp_path / f"t.perf.txt.{suffix}"
    path.write_bytes(_compressed(suffix, "".join(REAL[:5])) + junk)
    with pytest.raises(ValueError, match="corrupt or truncated trace"):
        replay_trace(str(path), "slab", pipeline=False)


@pytest.mark.parametrize("padding", [b"", b"\x00" * 4, b"\x00" * 70000])
@pytest.mark.parametrize("suffix", ["gz", "xz"])
def test_concatenated_streams_and_nul_padding_are_read_whole(tmp_path, suffix, padding):
    """The one rule, gzip's: streams one after another, NUL padding after any of them."""
    path = tmp_path / f"t.perf.txt.{suffix}"
    path.write_bytes(_compressed(suffix, "".join(REAL[:5])) + padding
                     + _compressed(suffix, "".join(REAL[5:9])) + padding)
    with open_trace(path) as lines:
        assert list(lines) == REAL[:9]


def _replay_from_stdin():
    return subprocess.Popen([sys.executable, "-m", "kalloc.cli", "replay", "-", "--backends", "slab,kmem_map"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _reader_pid(pid: int) -> int:
    """The forked trace reader of process ``pid`` (Linux /proc), once it runs."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for _ in range(200):
        if not children.exists():
            pytest.skip("no /proc/PID/task/PID/children on this kernel")
        pids = children.read_text().split()
        if pids:
            return int(pids[0])
        time.sleep(0.025)
    pytest.fail("no reader process")


@pytest.mark.skipif(not PIPELINE_OK or not Path("/proc/self/task").exists(),
                    reason="no pipelined replay, or no /proc, on this machine")
def test_the_trace_reader_leaves_ctrl_c_to_the_command():
    """A terminal's Ctrl-C reaches every process of the group; the reader ignores it (the
    command stops it), so it never prints a traceback.  Sent to the reader alone, the
    replay goes on and ends normally."""
    proc = _replay_from_stdin()
    try:
        proc.stdin.write("".join(REAL) * 50)
        proc.stdin.flush()
        os.kill(_reader_pid(proc.pid), signal.SIGINT)
        time.sleep(0.3)
        out, err = proc.communicate("".join(REAL) * 50, timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert out.startswith("workload")


@pytest.mark.skipif(not PIPELINE_OK, reason="no pipelined replay on this machine")
def test_ctrl_c_during_a_pipelined_replay_is_one_line():
    """SIGINT to the whole process group, as a terminal sends it: one line, exit 130."""
    proc = _replay_from_stdin()
    try:
        proc.stdin.write("".join(REAL) * 400)
        proc.stdin.flush()
        time.sleep(1.5)                              # the reader is running, stdin still open
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "kalloc: interrupted" and proc.returncode == 130
