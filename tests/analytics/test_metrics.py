"""Core CGM metrics: equal to iglu 4.3.0 on its example data, exact at the consensus boundaries,
and invariant where they must be (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.analytics.coverage import active_pct, active_pct_span, one_per_slot, sampling_interval
from glucoshare.analytics.grid import day_grid
from glucoshare.analytics.metrics import MGDL_PER_MMOLL, cohort_metrics, gri, j_index, risk_indices
from glucoshare.analytics.ranges import TargetScheme, classify_readings, target_range
from glucoshare.analytics.variability import conga, modd
from tests.analytics import iglu

REL = 1e-3  # the tolerance against iglu


def _single(values: list[float] | np.ndarray, mmol: np.ndarray | None = None):
    array = np.asarray(values, np.float64)
    return cohort_metrics(array, np.array([array.size]), mmol)


def _close(ours: float | None, theirs: float) -> None:
    assert ours is not None
    assert ours == pytest.approx(theirs, rel=REL, abs=1e-9)


@pytest.fixture(scope="module")
def subjects() -> dict[str, iglu.Subject]:
    return iglu.subjects()


def test_mean_sd_cv_gmi_bands_equal_iglu(subjects: dict[str, iglu.Subject]) -> None:
    names = list(subjects)
    cohort = cohort_metrics(
        np.concatenate([subjects[n].gl for n in names]), np.array([subjects[n].gl.size for n in names])
    )
    expect = {
        "mean": iglu.per_subject("mean_glu", "mean"),
        "sd": iglu.per_subject("sd_glu", "SD"),
        "cv": iglu.per_subject("cv_glu", "CV"),
        "gmi": iglu.per_subject("gmi", "GMI"),
        "tir": iglu.per_subject("in_range_percent", "in_range_70_180"),
        "below_54": iglu.per_subject("below_percent", "below_54"),
        "below_70": iglu.per_subject("below_percent", "below_70"),
        "above_180": iglu.per_subject("above_percent", "above_180"),
        "above_250": iglu.per_subject("above_percent", "above_250"),
    }
    for at, name in enumerate(names):
        _close(cohort.mean_mgdl[at], expect["mean"][name])
        _close(cohort.sd_mgdl[at], expect["sd"][name])
        _close(cohort.cv_pct[at], expect["cv"][name])
        _close(cohort.gmi_pct[at], expect["gmi"][name])
        _close(cohort.band("in_range")[at], expect["tir"][name])
        _close(cohort.band("very_low")[at], expect["below_54"][name])
        _close(cohort.band("very_low")[at] + cohort.band("low")[at], expect["below_70"][name])
        _close(cohort.band("high")[at] + cohort.band("very_high")[at], expect["above_180"][name])
        _close(cohort.band("very_high")[at], expect["above_250"][name])


def test_gri_risk_indices_and_j_index_equal_iglu(subjects: dict[str, iglu.Subject]) -> None:
    expect_gri = iglu.per_subject("gri", "GRI")
    expect_lbgi = iglu.per_subject("lbgi", "LBGI")
    expect_hbgi = iglu.per_subject("hbgi", "HBGI")
    expect_j = iglu.per_subject("j_index", "J_index")
    for name, subject in subjects.items():
        metrics = _single(subject.gl)
        bands = metrics.band_pct[0]
        _close(gri(bands[0], bands[1], bands[3], bands[4]).gri, expect_gri[name])
        risk = risk_indices(subject.gl)
        assert risk is not None
        # iglu-python reproduces R's LBGI to 1.5e-5 and HBGI to 6e-4 (metrics.md §3.1); R's own
        # values are what we hold to.
        _close(risk.lbgi, expect_lbgi[name])
        _close(risk.hbgi, expect_hbgi[name])
        _close(j_index(float(metrics.mean_mgdl[0]), float(metrics.sd_mgdl[0])), expect_j[name])


def test_modd_and_conga_on_the_day_grid_equal_iglu(subjects: dict[str, iglu.Subject]) -> None:
    expect_modd = iglu.per_subject("modd", "MODD")
    expect_conga = iglu.per_subject("conga", "CONGA")
    for name, subject in subjects.items():
        grid = day_grid(
            subject.utc_ms,
            subject.gl,
            first_offset_min=int(subject.local_ms[0] - subject.utc_ms[0]) // 60_000,
        )
        assert grid is not None
        _close(modd(grid), expect_modd[name])
        _close(conga(grid, hours=24), expect_conga[name])


def test_active_percent_over_the_span_equals_iglu(subjects: dict[str, iglu.Subject]) -> None:
    expect = iglu.per_subject("active_percent", "active_percent")
    for name, subject in subjects.items():
        interval = sampling_interval(subject.utc_ms)
        _close(active_pct_span(subject.utc_ms, interval), expect[name])


@pytest.mark.parametrize(
    ("values", "band", "expected"),
    [
        # Tidepool data-science-metrics' boundary vectors (research/metrics.md §3.2).
        ([69.99999, 70, 70.00001], "in_range", 200 / 3),
        ([70, 179.9999999, 180, 180.0000000001], "in_range", 75.0),
        ([40, 53.99999, 54, 54.00000001], "very_low", 50.0),
        ([249.999999, 250, 250.000001, 400], "very_high", 50.0),
        ([54.0], "low", 100.0),
        ([180.0], "in_range", 100.0),
        ([180.00001], "high", 100.0),
        ([250.0], "high", 100.0),
    ],
)
def test_consensus_boundaries_in_mgdl(values: list[float], band: str, expected: float) -> None:
    assert _single(values).band(band)[0] == pytest.approx(expected)


def test_printed_mmol_cutoffs_decide_for_readings_reported_in_mmol() -> None:
    mmol = np.array([2.9, 3.0, 3.85, 3.9, 7.8, 7.85, 10.0, 10.05, 13.9, 14.0])
    mgdl = mmol * MGDL_PER_MMOLL
    bands, tight = classify_readings(mgdl, mmol)
    assert bands.tolist() == [0, 1, 1, 2, 2, 2, 2, 3, 3, 4]
    assert tight.tolist() == [False, False, False, True, True, False, False, False, False, False]
    # 3.9 mmol/L is 70.26 mg/dL and 10.0 mmol/L is 180.16 mg/dL: in mg/dL 10.0 would be high.
    assert classify_readings(mgdl)[0][6] == 3


def test_target_schemes_and_their_goals() -> None:
    assert (target_range("standard").low_mgdl, target_range("standard").high_mgdl) == (70.0, 180.0)
    assert (target_range(TargetScheme.PREGNANCY).low_mgdl, target_range("pregnancy").high_mgdl) == (
        63.0,
        140.0,
    )
    assert target_range("older").goals.in_target_min_pct == 50.0
    assert target_range("older").goals.very_high_max_pct == 10.0
    assert target_range("custom", 80, 160).high_mgdl == 160.0
    with pytest.raises(ValueError, match="custom target range"):
        target_range("custom", 160, 80)


@pytest.mark.parametrize(
    ("bands", "zone"),
    [
        ((0, 0, 0, 0), "A"),
        ((1, 2, 10, 2), "A"),
        ((1, 2, 20, 5), "B"),
        ((3, 5, 20, 10), "C"),
        ((5, 5, 30, 10), "D"),
        ((20, 20, 20, 20), "E"),
    ],
)
def test_gri_zones_and_cap(bands: tuple[float, float, float, float], zone: str) -> None:
    result = gri(*bands)
    assert result.zone == zone
    assert result.gri <= 100.0
    assert result.gri == pytest.approx(min(100.0, 3.0 * result.hypo + 1.6 * result.hyper))


_READINGS = st.lists(st.floats(min_value=39.0, max_value=401.0), min_size=2, max_size=300)


@given(values=_READINGS)
def test_bands_sum_to_100(values: list[float]) -> None:
    metrics = _single(values)
    assert metrics.band_pct[0].sum() == pytest.approx(100.0)
    assert metrics.band("in_range")[0] >= metrics.tight_pct[0] - 1e-9 or metrics.tight_pct[0] == 0


@given(values=_READINGS, seed=st.integers(0, 2**32 - 1))
def test_order_of_readings_is_irrelevant(values: list[float], seed: int) -> None:
    shuffled = np.random.default_rng(seed).permutation(np.asarray(values))
    a, b = _single(values), _single(shuffled)
    assert a.mean_mgdl[0] == pytest.approx(b.mean_mgdl[0])
    assert a.sd_mgdl[0] == pytest.approx(b.sd_mgdl[0])
    assert a.band_pct[0].tolist() == b.band_pct[0].tolist()


@given(values=st.lists(st.floats(min_value=2.0, max_value=22.0), min_size=2, max_size=200))
def test_unit_round_trip_keeps_the_numbers(values: list[float]) -> None:
    mmol = np.round(np.asarray(values), 1)
    mgdl = mmol * MGDL_PER_MMOLL
    back = mgdl / MGDL_PER_MMOLL
    assert np.allclose(back, mmol)
    assert (
        classify_readings(mgdl, mmol)[0].tolist()
        == classify_readings(back * MGDL_PER_MMOLL, back)[0].tolist()
    )


@given(values=_READINGS, at=st.integers(0, 299))
def test_a_duplicate_reading_changes_nothing(values: list[float], at: int) -> None:
    times = np.arange(len(values), dtype=np.int64) * 300_000
    twice = np.concatenate([times, times[at % len(values) : at % len(values) + 1] + 20_000])
    readings = np.concatenate([values, [values[at % len(values)]]])
    kept = one_per_slot(twice, 5)
    assert kept.size == len(values)
    assert _single(readings[kept]).band_pct[0].tolist() == _single(values).band_pct[0].tolist()


@given(values=_READINGS, start=st.integers(0, 299), length=st.integers(1, 100))
def test_a_gap_lowers_sensor_use_and_never_raises_the_time_in_a_band(
    values: list[float], start: int, length: int
) -> None:
    array = np.asarray(values)
    period = array.size * 300_000
    start %= array.size
    kept = np.concatenate([array[:start], array[start + length :]])
    full = active_pct(array.size, 5, period)
    gapped = active_pct(kept.size, 5, period)
    assert full is not None
    assert gapped is not None
    assert gapped < full
    # Time in each band (readings × 5 min) over the same period can only go down.
    before = _single(array).band_pct[0] * array.size
    after = _single(kept).band_pct[0] * kept.size if kept.size else np.zeros(5)
    assert np.all(after <= before + 1e-9)


def test_empty_and_single_reading_cohorts_give_nan_not_errors() -> None:
    metrics = cohort_metrics(np.array([120.0]), np.array([0, 1]))
    assert math.isnan(metrics.mean_mgdl[0])
    assert metrics.mean_mgdl[1] == 120.0
    assert math.isnan(metrics.sd_mgdl[1])
    assert risk_indices(np.array([], np.float64)) is None
