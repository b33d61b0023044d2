"""One CGM series from several sources: the same sensor counted once, two sensors never merged.

A reading often reaches Glucoshare by more than one route: the vendor's own export (Dexcom Clarity),
an aggregator (Glooko, Tidepool) and an app relay (xDrip+, a Nightscout upload) all carry the
readings of the same sensor, each as its own device. Counting them all would double the data and
weight the metrics towards the days with more routes. Two sensors worn at the same time (a
Dexcom and a Libre compared side by side) are a different matter: their readings disagree by
several per cent and neither may hide the other.

The rule, per pair of streams and per UTC day:

1. The streams are ranked (:data:`RANK_PRIMARY` for the device maker's own export first, then
   aggregators, app relays, typed-in data); the better-ranked stream is kept whole.
2. A reading of the lower-ranked stream *matches* when the other stream has a reading within
   :data:`TIME_TOLERANCE_MS` of it (exports round times to the minute; phones and receivers differ by
   seconds) whose glucose is within :data:`VALUE_TOLERANCE_MGDL` (mmol/L exports round to 0.1, that is
   1.8 mg/dL).
3. When at least :data:`SAME_SENSOR_SHARE` of the lower-ranked stream's readings that the other stream
   covers on that day match (and there are at least :data:`MIN_READINGS` of them), the two are the same
   sensor that day: the lower-ranked stream's readings with a reading of the other within the time
   tolerance are dropped, and the rest (filling the other's gaps) are kept. Otherwise both are kept.

Two sensors match by chance only where a reading of one happens to fall within 90 s and 2 mg/dL of a
reading of the other: a few per cent of the time, far from the 80 % the rule asks for.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

RANK_PRIMARY = 0
"""The device maker's own export (Dexcom Clarity, LibreView, CareLink, Tandem Source, Smart Pix)."""
RANK_AGGREGATOR = 1
"""A platform that collected the data from the device (Glooko, diasend, Tidepool, t:connect)."""
RANK_RELAY = 2
"""An app or DIY relay of the readings (Nightscout, xDrip+, mySugr), and plugins we do not know."""
RANK_TYPED = 3
"""Data typed or converted by hand (the generic CSV, the diary)."""

TIME_TOLERANCE_MS = 90_000
VALUE_TOLERANCE_MGDL = 2.0
SAME_SENSOR_SHARE = 0.8
MIN_READINGS = 12
COVERED_MS = 10 * 60_000
"""A reading is covered by another stream when that stream has a reading within ten minutes."""
DAY_MS = 86_400_000


def _nearest(sorted_times: npt.NDArray[np.int64], times: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """For each of ``times``, the index in ``sorted_times`` of the closest instant."""
    right = np.searchsorted(sorted_times, times).clip(0, len(sorted_times) - 1)
    left = (right - 1).clip(0, len(sorted_times) - 1)
    pick_left = np.abs(sorted_times[left] - times) < np.abs(sorted_times[right] - times)
    return np.where(pick_left, left, right)


def _duplicates_of(
    kept_times: npt.NDArray[np.int64],
    kept_values: npt.NDArray[np.float64],
    times: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> npt.NDArray[np.bool_]:
    """Which of one stream's readings (``times`` sorted) repeat readings of a better-ranked stream."""
    near = _nearest(kept_times, times)
    gap = np.abs(kept_times[near] - times)
    close = gap <= TIME_TOLERANCE_MS
    covered = gap <= COVERED_MS
    matched = close & (np.abs(kept_values[near] - values) <= VALUE_TOLERANCE_MGDL)
    day = times // DAY_MS
    days, inverse = np.unique(day, return_inverse=True)
    covered_per_day = np.bincount(inverse, weights=covered, minlength=len(days))
    matched_per_day = np.bincount(inverse, weights=matched, minlength=len(days))
    same = (covered_per_day >= MIN_READINGS) & (matched_per_day >= SAME_SENSOR_SHARE * covered_per_day)
    repeated: npt.NDArray[np.bool_] = same[inverse] & close
    return repeated


def repeated_readings(
    time_ms: npt.NDArray[np.int64],
    mgdl: npt.NDArray[np.float64],
    stream: npt.NDArray[np.int64],
    rank: dict[int, int],
) -> npt.NDArray[np.bool_]:
    """The readings to leave out because a better-ranked source holds the same reading (module rule).

    ``time_ms`` (UTC ms), ``mgdl`` and ``stream`` (a source's id, e.g. the device) are parallel arrays
    in any order; ``rank`` maps each stream to its rank (lower wins; a stream without one counts as
    :data:`RANK_RELAY`; equal ranks are settled by the lower stream id, the source stored first).
    Returns a boolean mask over the input, True where a reading repeats one of a kept stream.
    """
    drop = np.zeros(len(time_ms), np.bool_)
    streams = np.unique(stream)
    if len(streams) < 2:  # noqa: PLR2004 - one source cannot repeat itself
        return drop
    order = sorted(streams.tolist(), key=lambda s: (rank.get(s, RANK_RELAY), s))
    kept: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = []
    for source in order:
        at = np.flatnonzero(stream == source)
        at = at[np.argsort(time_ms[at], kind="stable")]
        times, values = time_ms[at], mgdl[at]
        repeated = np.zeros(len(at), np.bool_)
        for kept_times, kept_values in kept:
            overlap = (times >= kept_times[0] - COVERED_MS) & (times <= kept_times[-1] + COVERED_MS)
            if overlap.any():
                repeated |= overlap & _duplicates_of(kept_times, kept_values, times, values)
        drop[at[repeated]] = True
        remaining = ~repeated
        if remaining.any():
            kept.append((times[remaining], values[remaining]))
    return drop
