"""A population's figures from summed daily aggregates, and its triage (after Tidepool's TIDE).

Inputs are, per patient, the sums of their daily aggregates over a period, as columns
(:data:`SUM_COLUMNS`): readings, readings per band, tight-range and extreme-high readings, Σg, Σg²
(mg/dL) and the minutes the readings cover (readings × sampling interval). Everything is computed
for all patients at once:

* band percentages = count ÷ readings × 100; mean = Σg ÷ n; SD = √((Σg² − n·mean²) ÷ (n − 1));
  GMI = 3.31 + 0.02392 × mean (Bergenstal 2018); CGM use = covered minutes ÷ period minutes × 100.

Triage categories, in priority order (a patient is in the first that matches; research/tidepool.md
§3.6, thresholds from the consensus goals, Battelino et al., Diabetes Care 2019;42:1593):

1. ``very_low``: time below 54 mg/dL > 1 %
2. ``any_low``: time below 70 mg/dL > 4 %
3. ``very_high``: time above 250 mg/dL > 5 %
4. ``any_high``: time above 180 mg/dL > 25 %
5. ``drop_in_target``: time in range 70–180 fell by more than 15 percentage points against the
   previous period of the same length
6. ``low_cgm_use``: CGM use < 70 %
7. ``meeting_targets``: time in range ≥ 70 %, CGM use ≥ 70 %, extreme highs (≥ 350 mg/dL) < 1 %
8. ``no_data``: no readings in the period, or none recent enough

Patients who match none (for instance ≥ 1 % extreme highs with every band goal met) are ``other``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

SUM_COLUMNS = (
    "readings",
    "very_low",
    "low",
    "in_range",
    "high",
    "very_high",
    "tight",
    "extreme_high",
    "sum_mgdl",
    "sum_sq_mgdl",
    "minutes",
)
"""The columns of the sums, in order."""

CATEGORIES = (
    "very_low",
    "any_low",
    "very_high",
    "any_high",
    "drop_in_target",
    "low_cgm_use",
    "meeting_targets",
    "no_data",
    "other",
)
VERY_LOW_MAX_PCT = 1.0
ANY_LOW_MAX_PCT = 4.0
VERY_HIGH_MAX_PCT = 5.0
ANY_HIGH_MAX_PCT = 25.0
TARGET_DROP_PCT = 15.0
CGM_USE_MIN_PCT = 70.0
IN_RANGE_MIN_PCT = 70.0
EXTREME_HIGH_MAX_PCT = 1.0

Floats = npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True, slots=True)
class PeriodFigures:
    """Per-patient figures of one period, as arrays (NaN where a patient has no readings)."""

    readings: npt.NDArray[np.int64]
    cgm_use_pct: Floats
    mean_mgdl: Floats
    sd_mgdl: Floats
    gmi_pct: Floats
    very_low_pct: Floats
    low_pct: Floats
    in_range_pct: Floats
    high_pct: Floats
    very_high_pct: Floats
    tight_pct: Floats
    extreme_high_pct: Floats


def period_figures(sums: Floats, days: int) -> PeriodFigures:
    """The figures of every patient from their summed aggregates (patients × :data:`SUM_COLUMNS`)."""
    table = np.asarray(sums, np.float64).reshape(-1, len(SUM_COLUMNS))
    n = table[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = 100.0 * table[:, 1:8] / n[:, None]
        mean = table[:, 8] / n
        variance = (table[:, 9] - n * mean * mean) / (n - 1)
        sd = np.sqrt(np.maximum(variance, 0.0))
        sd[n < 2] = np.nan  # noqa: PLR2004 - a sample SD needs two readings
    return PeriodFigures(
        readings=n.astype(np.int64),
        cgm_use_pct=np.minimum(100.0, 100.0 * table[:, 10] / (days * 1440.0)),
        mean_mgdl=mean,
        sd_mgdl=sd,
        gmi_pct=3.31 + 0.02392 * mean,
        very_low_pct=share[:, 0],
        low_pct=share[:, 1],
        in_range_pct=share[:, 2],
        high_pct=share[:, 3],
        very_high_pct=share[:, 4],
        tight_pct=share[:, 5],
        extreme_high_pct=share[:, 6],
    )


def triage(current: PeriodFigures, previous: PeriodFigures, recent: npt.NDArray[np.bool_]) -> list[str]:
    """The category of every patient (module notes); ``recent`` marks patients with recent data."""
    very_low = np.nan_to_num(current.very_low_pct)
    very_high = np.nan_to_num(current.very_high_pct)
    in_range = np.nan_to_num(current.in_range_pct)
    drop = in_range - previous.in_range_pct  # NaN (no test) without a previous period
    conditions = [
        (current.readings == 0) | ~recent,
        very_low > VERY_LOW_MAX_PCT,
        very_low + np.nan_to_num(current.low_pct) > ANY_LOW_MAX_PCT,
        very_high > VERY_HIGH_MAX_PCT,
        very_high + np.nan_to_num(current.high_pct) > ANY_HIGH_MAX_PCT,
        drop < -TARGET_DROP_PCT,
        current.cgm_use_pct < CGM_USE_MIN_PCT,
        (in_range >= IN_RANGE_MIN_PCT) & (np.nan_to_num(current.extreme_high_pct) < EXTREME_HIGH_MAX_PCT),
    ]
    names = ["no_data", *CATEGORIES[:7]]
    index = np.select(conditions, list(range(len(names))), default=len(names))
    labels = [*names, "other"]
    return [labels[i] for i in index.tolist()]
