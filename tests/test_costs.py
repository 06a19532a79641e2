"""RANGES and CONFIDENCE: the uncertainty of each 2003 price, for the sensitivity sweep."""

import attrs
import pytest

from kalloc.costs import CONFIDENCE, PRESETS, RANGES, CostModel

FIELDS = [f.name for f in attrs.fields(CostModel)]


def test_ranges_cover_exactly_the_fields():
    assert set(RANGES) == set(FIELDS)
    assert "clock_hz" in RANGES


@pytest.mark.parametrize("name", FIELDS)
def test_range_brackets_the_2003_default(name):
    low, high = RANGES[name]
    for end in (low, high):
        assert isinstance(end, int) and not isinstance(end, bool) and end >= 0
    assert low <= getattr(PRESETS["2003"], name) <= high


def test_range_ends_are_valid_overrides():
    for name, (low, high) in RANGES.items():
        assert getattr(CostModel.from_config({name: low}), name) == low
        assert getattr(CostModel.from_config({name: high}), name) == high


def test_confidence_covers_the_same_keys():
    assert set(CONFIDENCE) == set(RANGES)
    assert set(CONFIDENCE.values()) <= {"high", "med", "low"}


def test_1994_preset():
    m = CostModel.from_config({"preset": "1994"})
    assert m.clock_hz == 40_000_000
    assert m.lock_uncontended == 40          # Bonwick 1994: mutex_enter/exit 1.0 us at 40 MHz
    assert m.op_base == 36                   # (3.8 - 2 x 1.0) us / 2 ops
    assert all(isinstance(getattr(m, f), int) for f in FIELDS)
