"""Glucose ranges, target-range schemes and their goals (International Consensus on Time in Range).

References: Battelino T et al., Diabetes Care 2019;42:1593 (ranges, goals, data sufficiency);
Battelino T et al., Lancet Diabetes Endocrinol 2023;11:42 (tight range 70–140 mg/dL); ADA
Standards of Care, "Glycemic Goals" (older / high-risk and pregnancy goals).

Bands partition the readings (their percentages add up to 100):

=============  =================  =====================  ============================
band           mg/dL              mmol/L (printed)       test on a reading ``g``
=============  =================  =====================  ============================
very low       < 54               < 3.0                  ``g < 54``
low            54–69              3.0–3.8                ``54 <= g < 70``
in range       70–180             3.9–10.0               ``70 <= g <= 180``
high           181–250            10.1–13.9              ``180 < g <= 250``
very high      > 250              > 13.9                 ``g > 250``
=============  =================  =====================  ============================

Readings a device reported in mmol/L are classified with the printed mmol/L cut-offs on the value
as reported (so 3.9 and 10.0 mmol/L are in range), never with converted mg/dL boundaries. The
tight range is 70–140 mg/dL (3.9–7.8 mmol/L), both ends inclusive.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np
import numpy.typing as npt


@dataclasses.dataclass(frozen=True, slots=True)
class Cutoffs:
    """The boundaries of the five bands and of the tight range, in one unit (module table)."""

    very_low: float  # below: very low
    low: float  # below (and at or above very_low): low
    high: float  # at or below (and at or above low): in range
    very_high: float  # above: very high; above high and at or below: high
    tight_high: float  # the tight range is low..tight_high, inclusive


MGDL_CUTOFFS = Cutoffs(very_low=54.0, low=70.0, high=180.0, very_high=250.0, tight_high=140.0)
MMOL_CUTOFFS = Cutoffs(very_low=3.0, low=3.9, high=10.0, very_high=13.9, tight_high=7.8)

VERY_LOW, LOW, IN_RANGE, HIGH, VERY_HIGH = range(5)
BANDS = ("very_low", "low", "in_range", "high", "very_high")


def classify(values: npt.NDArray[np.float64], cutoffs: Cutoffs = MGDL_CUTOFFS) -> npt.NDArray[np.int8]:
    """The band (0 very low … 4 very high) of every reading, with the consensus boundaries.

    ``values`` are in the unit of ``cutoffs`` (mg/dL by default); see the module table.
    """
    bands = np.full(values.shape, IN_RANGE, np.int8)
    bands[values < cutoffs.low] = LOW
    bands[values < cutoffs.very_low] = VERY_LOW
    bands[values > cutoffs.high] = HIGH
    bands[values > cutoffs.very_high] = VERY_HIGH
    return bands


def classify_readings(
    mgdl: npt.NDArray[np.float64],
    mmol: npt.NDArray[np.float64] | None = None,
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.bool_]]:
    """Bands and tight-range membership of readings stored in mg/dL.

    ``mmol`` holds, per reading, the value as a device reported it in mmol/L, or NaN for readings
    reported in mg/dL; those in mmol/L are classified on the printed mmol/L cut-offs.
    """
    bands = classify(mgdl)
    tight = (mgdl >= MGDL_CUTOFFS.low) & (mgdl <= MGDL_CUTOFFS.tight_high)
    if mmol is not None:
        reported = np.isfinite(mmol)
        if reported.any():
            values = mmol[reported]
            bands[reported] = classify(values, MMOL_CUTOFFS)
            tight[reported] = (values >= MMOL_CUTOFFS.low) & (values <= MMOL_CUTOFFS.tight_high)
    return bands, tight


class TargetScheme(enum.StrEnum):
    """A patient's target range and goals."""

    STANDARD = "standard"
    """Most adults with type 1 or type 2 diabetes: 70–180 mg/dL."""
    OLDER = "older"
    """Older or high risk of hypoglycaemia: 70–180 mg/dL with looser goals."""
    PREGNANCY = "pregnancy"
    """Pregnancy with type 1 diabetes: 63–140 mg/dL."""
    CUSTOM = "custom"
    """A range the patient or their clinic set, with the standard goals."""


@dataclasses.dataclass(frozen=True, slots=True)
class Goals:
    """Consensus goals for the percentages of readings (``None``: no goal for that figure)."""

    in_target_min_pct: float | None
    below_max_pct: float | None  # below the target's low end, very low included
    very_low_max_pct: float | None
    above_max_pct: float | None  # above the target's high end, very high included
    very_high_max_pct: float | None
    cv_max_pct: float = 36.0  # Monnier L et al., Diabetes Care 2017;40:832


@dataclasses.dataclass(frozen=True, slots=True)
class TargetRange:
    """A target range in mg/dL (both ends inclusive) with its goals."""

    scheme: TargetScheme
    low_mgdl: float
    high_mgdl: float
    goals: Goals


_STANDARD_GOALS = Goals(
    in_target_min_pct=70.0, below_max_pct=4.0, very_low_max_pct=1.0, above_max_pct=25.0, very_high_max_pct=5.0
)
_OLDER_GOALS = Goals(
    in_target_min_pct=50.0,
    below_max_pct=1.0,
    very_low_max_pct=None,
    above_max_pct=50.0,
    very_high_max_pct=10.0,
)
_PREGNANCY_GOALS = Goals(
    in_target_min_pct=70.0,
    below_max_pct=4.0,
    very_low_max_pct=1.0,
    above_max_pct=25.0,
    very_high_max_pct=None,
)


def target_range(
    scheme: TargetScheme | str, low_mgdl: float | None = None, high_mgdl: float | None = None
) -> TargetRange:
    """The target range of a scheme; ``custom`` needs ``low_mgdl < high_mgdl`` (``ValueError``)."""
    scheme = TargetScheme(scheme)
    if scheme is TargetScheme.STANDARD:
        return TargetRange(scheme, 70.0, 180.0, _STANDARD_GOALS)
    if scheme is TargetScheme.OLDER:
        return TargetRange(scheme, 70.0, 180.0, _OLDER_GOALS)
    if scheme is TargetScheme.PREGNANCY:
        return TargetRange(scheme, 63.0, 140.0, _PREGNANCY_GOALS)
    if low_mgdl is None or high_mgdl is None or not 0 < low_mgdl < high_mgdl:
        msg = "a custom target range needs a low end below its high end, both above 0 mg/dL"
        raise ValueError(msg)
    return TargetRange(scheme, float(low_mgdl), float(high_mgdl), _STANDARD_GOALS)
