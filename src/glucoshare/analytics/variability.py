"""Glycaemic variability between days and across hours: MODD and CONGA, on the day grid.

Both compare readings a fixed time apart, so they use readings interpolated onto a regular grid of
whole days (:func:`glucoshare.analytics.grid.day_grid`, iglu's conventions), and skip pairs where
either side is a gap. Values in mg/dL.

* MODD, mean of daily differences: the mean of |g(t) − g(t − 24 h)| over all grid times where both
  are known (Molnar GD, Taylor WF, Ho MM, Diabetologia 1972;8:342).
* CONGA(n), continuous overall net glycaemic action: the sample SD of g(t) − g(t − n hours) over the
  whole trace (McDonnell CM et al., Diabetes Technol Ther 2005;7:253). The stats document reports
  CONGA1 (n = 1); iglu's default is n = 24.
"""

from __future__ import annotations

import numpy as np

from glucoshare.analytics.grid import DayGrid


def modd(grid: DayGrid) -> float | None:
    """Mean of daily differences in mg/dL; ``None`` without two days with matching grid times."""
    if grid.values.shape[0] < 2:  # noqa: PLR2004
        return None
    differences = np.abs(np.diff(grid.values, axis=0))
    known = differences[np.isfinite(differences)]
    return float(known.mean()) if known.size else None


def conga(grid: DayGrid, hours: int = 1) -> float | None:
    """CONGA over ``hours`` hours in mg/dL; ``None`` with fewer than two known differences."""
    lag = round(60 / grid.dt_min) * hours
    flat = grid.flat
    if lag <= 0 or flat.size <= lag:
        return None
    differences = flat[lag:] - flat[:-lag]
    known = differences[np.isfinite(differences)]
    if known.size < 2:  # noqa: PLR2004
        return None
    return float(known.std(ddof=1))
