"""Core CGM summary: mean, SD, CV, GMI and the consensus time in ranges.

References: Battelino T et al., "Clinical Targets for Continuous Glucose Monitoring Data
Interpretation: Recommendations From the International Consensus on Time in Range", Diabetes
Care 2019;42:1593 (ranges; 70 and 180 mg/dL are in range, 54 is in 54–69, 250 in 181–250);
Bergenstal RM et al., "Glucose Management Indicator (GMI)", Diabetes Care 2018;41:2275
(GMI % = 3.31 + 0.02392 × mean mg/dL); Monnier L et al., Diabetes Care 2017;40:832 (CV).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

VERY_LOW_MGDL = 54.0
LOW_MGDL = 70.0
HIGH_MGDL = 180.0
VERY_HIGH_MGDL = 250.0


@dataclasses.dataclass(frozen=True, slots=True)
class GlucoseSummary:
    """Summary of a series of CGM readings; glucose in mg/dL, percentages 0–100.

    ``None`` where a number is not computable (no readings; SD needs two).
    """

    readings: int
    mean_mgdl: float | None
    sd_mgdl: float | None
    cv_pct: float | None
    gmi_pct: float | None
    very_low_pct: float | None
    low_pct: float | None
    in_range_pct: float | None
    high_pct: float | None
    very_high_pct: float | None


def glucose_summary(mgdl: npt.NDArray[np.float64]) -> GlucoseSummary:
    """Summarise CGM readings (mg/dL, any order).

    Bands partition the readings: very low ``g < 54``, low ``54 ≤ g < 70``, in range
    ``70 ≤ g ≤ 180``, high ``180 < g ≤ 250``, very high ``g > 250``. SD is the sample SD (n − 1).
    """
    values = np.asarray(mgdl, dtype=np.float64)
    n = int(values.size)
    if n == 0:
        return GlucoseSummary(0, None, None, None, None, None, None, None, None, None)
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if n > 1 else None
    cv = 100.0 * sd / mean if sd is not None and mean > 0 else None

    def pct(mask: npt.NDArray[np.bool_]) -> float:
        return 100.0 * float(np.count_nonzero(mask)) / n

    return GlucoseSummary(
        readings=n,
        mean_mgdl=mean,
        sd_mgdl=sd,
        cv_pct=cv,
        gmi_pct=3.31 + 0.02392 * mean if math.isfinite(mean) else None,
        very_low_pct=pct(values < VERY_LOW_MGDL),
        low_pct=pct((values >= VERY_LOW_MGDL) & (values < LOW_MGDL)),
        in_range_pct=pct((values >= LOW_MGDL) & (values <= HIGH_MGDL)),
        high_pct=pct((values > HIGH_MGDL) & (values <= VERY_HIGH_MGDL)),
        very_high_pct=pct(values > VERY_HIGH_MGDL),
    )
