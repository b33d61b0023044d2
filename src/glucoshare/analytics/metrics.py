"""Consensus CGM metrics for one patient or a whole cohort at once.

Every function takes readings in mg/dL (float64) and returns unrounded numbers; ``None`` (or NaN
in cohort arrays) where a figure is not computable. A cohort is one flat array of readings with the
number of readings of each patient (``counts``), patients in order; the per-patient figures are
computed together (``np.bincount`` over the patient index), so a clinic's thousands of patients
cost one pass over their readings.

Definitions and references:

* mean; SD is the sample SD (n − 1), as iglu, cgmpy and the consensus tools use it; CV % = 100 ×
  SD / mean, goal ≤ 36 % (Monnier L et al., Diabetes Care 2017;40:832).
* GMI % = 3.31 + 0.02392 × mean[mg/dL]; GMI mmol/mol = 12.71 + 4.70587 × mean[mmol/L]
  (Bergenstal RM et al., Diabetes Care 2018;41:2275).
* Bands and tight range: :mod:`glucoshare.analytics.ranges` (Battelino 2019, 2023).
* GRI = 3.0 × very low % + 2.4 × low % + 1.6 × very high % + 0.8 × high %, at most 100;
  hypoglycaemia component = very low + 0.8 × low, hyperglycaemia component = very high + 0.5 ×
  high; zones A ≤ 20 < B ≤ 40 < C ≤ 60 < D ≤ 80 < E (Klonoff DC et al., J Diabetes Sci Technol
  2023;17:1226).
* LBGI / HBGI: f = 1.509 × ((ln g)^1.084 − 5.381), r = 10 f²; LBGI = mean of r where f < 0 (0
  elsewhere), HBGI = mean of r where f > 0 (Kovatchev BP et al., Diabetes Care 1997;20:1655 and
  1998;21:1870).
* J-index = 0.001 × (mean + SD)² (Wójcicki JM, Horm Metab Res 1995;27:41).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from glucoshare.analytics.ranges import BANDS, classify_readings

MGDL_PER_MMOLL = 18.01559
"""mg/dL per mmol/L (the factor Glucoshare stores glucose with)."""

GRI_ZONES = ("A", "B", "C", "D", "E")


@dataclasses.dataclass(frozen=True, slots=True)
class CohortMetrics:
    """Per-patient metrics of a cohort: arrays of one value per patient (NaN: not computable)."""

    readings: npt.NDArray[np.int64]
    mean_mgdl: npt.NDArray[np.float64]
    sd_mgdl: npt.NDArray[np.float64]
    cv_pct: npt.NDArray[np.float64]
    gmi_pct: npt.NDArray[np.float64]
    band_pct: npt.NDArray[np.float64]  # patients × 5 (very low, low, in range, high, very high)
    tight_pct: npt.NDArray[np.float64]

    def band(self, name: str) -> npt.NDArray[np.float64]:
        """One band's percentages (``very_low``, ``low``, ``in_range``, ``high``, ``very_high``)."""
        return self.band_pct[:, BANDS.index(name)]


def _patient_index(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    return np.repeat(np.arange(counts.size), counts)


def cohort_metrics(
    mgdl: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    mmol: npt.NDArray[np.float64] | None = None,
) -> CohortMetrics:
    """Mean, SD, CV, GMI, the five bands and the tight range for every patient of a cohort.

    ``mgdl`` holds every patient's readings one patient after the other, ``counts`` how many each
    patient has; ``mmol`` (optional, same length) the value as reported in mmol/L or NaN (see
    :func:`~glucoshare.analytics.ranges.classify_readings`).
    """
    counts = np.asarray(counts, np.int64)
    patients = counts.size
    index = _patient_index(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = counts.astype(np.float64)
        mean = np.bincount(index, weights=mgdl, minlength=patients) / n
        deviation = mgdl - mean[index]
        squares = np.bincount(index, weights=deviation * deviation, minlength=patients)
        sd = np.sqrt(squares / (n - 1))
        sd[counts < 2] = np.nan  # noqa: PLR2004 - a sample SD needs two readings
        cv = 100.0 * sd / mean
        bands, tight = classify_readings(mgdl, mmol)
        band_counts = np.bincount(index * 5 + bands, minlength=patients * 5).reshape(patients, 5)
        band_pct = 100.0 * band_counts / n[:, None]
        tight_pct = 100.0 * np.bincount(index, weights=tight, minlength=patients) / n
    return CohortMetrics(
        readings=counts,
        mean_mgdl=mean,
        sd_mgdl=sd,
        cv_pct=cv,
        gmi_pct=gmi_pct(mean),
        band_pct=band_pct,
        tight_pct=tight_pct,
    )


def gmi_pct(mean_mgdl: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Glucose Management Indicator in % (NGSP) from the mean glucose in mg/dL (Bergenstal 2018)."""
    return 3.31 + 0.02392 * mean_mgdl


def gmi_mmol_mol(mean_mgdl: float) -> float:
    """Glucose Management Indicator in mmol/mol (IFCC) from the mean glucose in mg/dL (Bergenstal 2018)."""
    return 12.71 + 4.70587 * mean_mgdl / MGDL_PER_MMOLL


@dataclasses.dataclass(frozen=True, slots=True)
class Gri:
    """Glycaemia Risk Index with its components (Klonoff 2023)."""

    gri: float
    hypo: float
    hyper: float
    zone: str


def gri(very_low_pct: float, low_pct: float, high_pct: float, very_high_pct: float) -> Gri:
    """GRI from the band percentages (0–100): see the module notes for the formula and zones."""
    hypo = very_low_pct + 0.8 * low_pct
    hyper = very_high_pct + 0.5 * high_pct
    value = min(100.0, 3.0 * hypo + 1.6 * hyper)
    zone = GRI_ZONES[min(4, max(0, int(np.ceil(value / 20.0)) - 1))]
    return Gri(gri=value, hypo=hypo, hyper=hyper, zone=zone)


@dataclasses.dataclass(frozen=True, slots=True)
class RiskIndices:
    """Low and high blood glucose indices (Kovatchev)."""

    lbgi: float
    hbgi: float


def risk_indices(mgdl: npt.NDArray[np.float64]) -> RiskIndices | None:
    """LBGI and HBGI of readings in mg/dL (module notes); ``None`` without readings."""
    values = mgdl[np.isfinite(mgdl) & (mgdl > 0)]
    if values.size == 0:
        return None
    f = 1.509 * (np.log(values) ** 1.084 - 5.381)
    r = 10.0 * f * f
    return RiskIndices(
        lbgi=float(np.where(f < 0, r, 0.0).mean()),
        hbgi=float(np.where(f > 0, r, 0.0).mean()),
    )


def j_index(mean_mgdl: float, sd_mgdl: float) -> float:
    """J-index = 0.001 × (mean + SD)², mean and SD in mg/dL (Wójcicki 1995)."""
    return 0.001 * (mean_mgdl + sd_mgdl) ** 2
