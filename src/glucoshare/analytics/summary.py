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

from glucoshare.analytics.metrics import cohort_metrics


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
    """Summarise CGM readings (mg/dL, any order) with :func:`~glucoshare.analytics.metrics.cohort_metrics`.

    Bands partition the readings: very low ``g < 54``, low ``54 ≤ g < 70``, in range
    ``70 ≤ g ≤ 180``, high ``180 < g ≤ 250``, very high ``g > 250``. SD is the sample SD (n − 1).
    """
    values = np.asarray(mgdl, dtype=np.float64)
    n = int(values.size)
    if n == 0:
        return GlucoseSummary(0, None, None, None, None, None, None, None, None, None)
    metrics = cohort_metrics(values, np.array([n], np.int64))

    def number(array: npt.NDArray[np.float64]) -> float | None:
        value = float(array[0])
        return value if math.isfinite(value) else None

    bands = [float(x) for x in metrics.band_pct[0]]
    return GlucoseSummary(
        readings=n,
        mean_mgdl=number(metrics.mean_mgdl),
        sd_mgdl=number(metrics.sd_mgdl),
        cv_pct=number(metrics.cv_pct),
        gmi_pct=number(metrics.gmi_pct),
        very_low_pct=bands[0],
        low_pct=bands[1],
        in_range_pct=bands[2],
        high_pct=bands[3],
        very_high_pct=bands[4],
    )
