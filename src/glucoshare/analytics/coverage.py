"""Which CGM readings count, and how much of a period the sensor covered.

* **One reading per sampling slot.** The same reading can arrive twice: from two exports of
  different sources (a receiver and a phone app, a vendor export and an uploader app), with clocks a
  few seconds or a minute apart. Before anything is counted, readings are sorted by time and a
  reading less than half a sampling interval after the previous one is dropped (the first one
  stays). Readings of a regular series are a whole interval apart, so none of them is ever dropped.
* **Sampling interval** of a series: the median step between readings in whole minutes, at least 1
  (5 for Dexcom and most sensors, 15 for the FreeStyle Libre history, 1 for Libre 3 and Simplera).
* **Sensor active %** (2019 consensus, Battelino et al., Diabetes Care 2019;42:1593): readings
  received ÷ readings possible in the period at the sampling interval, × 100, at most 100.
* :func:`active_pct_span` is iglu's "automatic" variant over the span from the first to the last
  reading (Broll et al., PLoS One 2021), for comparison with iglu.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MINUTE_MS = 60_000


def sampling_interval(utc_ms: npt.NDArray[np.int64]) -> int:
    """The sampling interval in whole minutes (median step of sorted readings, ties to even), ≥ 1.

    Steps shorter than 30 seconds (duplicates) are ignored; 5 when there is no step to measure.
    """
    steps = np.diff(np.sort(utc_ms))
    steps = steps[steps >= MINUTE_MS // 2]
    if steps.size == 0:
        return 5
    return max(1, round(float(np.median(steps)) / MINUTE_MS))


def one_per_slot(utc_ms: npt.NDArray[np.int64], interval_min: int) -> npt.NDArray[np.intp]:
    """Indexes of the readings that count, in time order (see the module notes).

    ``utc_ms`` need not be sorted; of readings less than half an interval after their predecessor
    only the first one is kept.
    """
    order = np.argsort(utc_ms, kind="stable")
    times = utc_ms[order]
    keep = np.ones(times.size, np.bool_)
    keep[1:] = np.diff(times) * 2 >= interval_min * MINUTE_MS
    return order[keep]


def active_pct(readings: int, interval_min: int, period_ms: int) -> float | None:
    """Sensor active % of a period: ``readings`` ÷ possible readings × 100, at most 100.

    ``period_ms`` is the length of the period in milliseconds; ``None`` for an empty period.
    """
    possible = period_ms / (interval_min * MINUTE_MS)
    if possible <= 0:
        return None
    return min(100.0, 100.0 * readings / possible)


def active_pct_span(utc_ms: npt.NDArray[np.int64], interval_min: int) -> float | None:
    """Sensor active % over the span from the first to the last reading, as iglu computes it.

    Possible readings over the span, less the readings missing in gaps longer than the interval,
    rounded as iglu rounds ("automatic" range in iglu's ``active_percent``).
    """
    times = np.sort(utc_ms)
    if times.size < 2:  # noqa: PLR2004
        return None
    steps = np.diff(times) / MINUTE_MS
    possible = np.round(np.round((times[-1] - times[0]) / MINUTE_MS) / interval_min) + 1
    gaps = np.round(steps) > interval_min
    missing = np.round((steps[gaps].sum() - gaps.sum() * interval_min) / interval_min)
    return float(100.0 * (possible - missing) / possible)
