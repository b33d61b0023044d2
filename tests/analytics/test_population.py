"""Population figures from summed aggregates, and the triage categories in priority order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.analytics.population import SUM_COLUMNS, period_figures, triage


def _sums(
    bands: tuple[int, int, int, int, int], *, values: list[float] | None = None, minutes: float = 14 * 1440
) -> list[float]:
    n = sum(bands)
    readings = np.asarray(values if values is not None else [120.0] * n)
    tight = int(bands[2] // 2)
    return [n, *bands, tight, 0, float(readings.sum()), float((readings**2).sum()), minutes]


def _category(current: list[float], previous: list[float] | None = None, *, recent: bool = True) -> str:
    before = previous if previous is not None else [0.0] * len(SUM_COLUMNS)
    return triage(
        period_figures(np.array([current]), 14), period_figures(np.array([before]), 14), np.array([recent])
    )[0]


@pytest.mark.parametrize(
    ("bands", "category"),
    [
        ((2, 0, 98, 0, 0), "very_low"),  # 2 % below 54 beats everything else
        ((0, 5, 95, 0, 0), "any_low"),
        ((0, 0, 70, 24, 6), "very_high"),
        ((0, 0, 70, 30, 0), "any_high"),
        ((0, 0, 80, 20, 0), "meeting_targets"),
        ((1, 3, 71, 20, 5), "meeting_targets"),  # every goal exactly at its limit is met
    ],
)
def test_categories_in_priority_order(bands: tuple[int, int, int, int, int], category: str) -> None:
    assert _category(_sums(bands)) == category


def test_drop_in_target_low_use_no_data_and_stale_data() -> None:
    good = _sums((0, 0, 95, 5, 0))
    assert _category(_sums((0, 0, 72, 28, 0)), good) == "any_high"  # earlier categories first
    assert _category(_sums((0, 0, 75, 25, 0)), good) == "drop_in_target"  # 20 points down
    assert _category(_sums((0, 0, 80, 20, 0)), good) == "meeting_targets"  # 15 points: not more
    assert _category(_sums((0, 0, 90, 10, 0), minutes=0.5 * 14 * 1440)) == "low_cgm_use"
    assert _category([0.0] * len(SUM_COLUMNS)) == "no_data"
    assert _category(good, recent=False) == "no_data"


@given(values=st.lists(st.floats(40, 400), min_size=2, max_size=200))
def test_mean_and_sd_from_sums_equal_the_readings(values: list[float]) -> None:
    figures = period_figures(np.array([_sums((0, 0, len(values), 0, 0), values=values)]), 14)
    assert figures.mean_mgdl[0] == pytest.approx(np.mean(values))
    # Σg² − n·mean² cancels for nearly equal readings: exact to well under 0.001 mg/dL.
    assert figures.sd_mgdl[0] == pytest.approx(np.std(values, ddof=1), rel=1e-6, abs=1e-3)
