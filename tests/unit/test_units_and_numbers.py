"""Canonical units and locale-aware numbers."""

from __future__ import annotations

import gc
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.ingest.numbers import bounded_amount, parse_duration_ms, parse_number
from glucoshare.ingest.service import collector_paused
from glucoshare.records.vocabulary import MGDL_PER_MMOLL, mgdl_to_mmol, mmol_to_mgdl


def test_conversion_factor_is_tidepools() -> None:
    assert MGDL_PER_MMOLL == 18.01559
    assert mmol_to_mgdl(10.0) == pytest.approx(180.1559)
    assert mgdl_to_mmol(180.1559) == pytest.approx(10.0)


@given(st.floats(min_value=0.1, max_value=60.0))
def test_conversion_round_trips(mmol: float) -> None:
    assert mgdl_to_mmol(mmol_to_mgdl(mmol)) == pytest.approx(mmol, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "comma", "expected"),
    [
        ("5.5", False, 5.5),
        ("5,5", True, 5.5),
        (" 12 ", False, 12.0),
        ("1.234,5", True, 1234.5),
        ("7", True, 7.0),
    ],
)
def test_parse_number(text: str, comma: bool, expected: float) -> None:
    assert parse_number(text, decimal_comma=comma) == expected


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "1_000", "5,5"])
def test_parse_number_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_number(text)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_parse_number_reads_what_python_writes(value: float) -> None:
    assert parse_number(repr(value)) == value
    assert math.isclose(parse_number(f"{value:.3f}".replace(".", ","), decimal_comma=True), round(value, 3))


@pytest.mark.parametrize(
    ("text", "ms"), [("00:45:00", 2_700_000), ("1:00:01", 3_601_000), ("26:00:00", 93_600_000)]
)
def test_parse_duration(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["45", "00:60:00", "00:00:60", "a:b:c", "-1:00:00"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_ms(text)


def test_the_collector_pause_is_shared_and_restores_what_it_found() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # a concurrent import
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first import still runs
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("text", "message"),
    [("x", "dose is not a number"), ("-1", "dose is negative"), ("25,5", "dose is out of range")],
)
def test_bounded_amount_names_the_rule_never_the_text(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        bounded_amount(text, "dose", 25.0)


def test_bounded_amount_reads_both_decimal_marks() -> None:
    assert bounded_amount("2,5", "dose", 25.0) == 2.5
    assert bounded_amount("2.5", "dose", 25.0) == 2.5
    assert bounded_amount("25", "dose", 25.0) == 25.0
