"""CGM readings on a regular grid of whole days, for the metrics that compare readings in time.

MAGE, MODD, CONGA and the glucose events need readings at fixed steps. Like iglu's
``CGMS2DayByDay`` (Broll et al., "Interpreting blood GLUcose data with R package iglu", PLoS One
2021;16:e0248560), which our reference values come from, the grid

* starts at the local midnight of the day of the first reading and has ``days × 1440 / dt`` points,
  the first one ``dt`` minutes after that midnight and the last one at the midnight ending the last
  day; ``days = ceil(span in days + 1)``;
* steps ``dt`` minutes in real (UTC) time, so a day with a daylight-saving change still has 1,440
  minutes of grid (local-time grouping, for the AGP and the daily figures, is done elsewhere);
* takes ``dt`` as the median step between readings rounded to whole minutes (ties to even), made a
  divisor of 1,440: above 20 minutes it becomes 20, otherwise it is rounded to a multiple of 5;
* interpolates linearly between neighbouring readings, but leaves a gap (NaN) where two readings
  are more than ``inter_gap`` minutes apart, and outside the first and last reading.

Of readings at the same instant, the last one counts. Inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import numpy.typing as npt

MINUTE_MS = 60_000
DAY_MS = 86_400_000
DEFAULT_INTER_GAP_MIN = 45


@dataclasses.dataclass(frozen=True, slots=True)
class DayGrid:
    """Glucose (mg/dL) on a regular grid, one row per day.

    ``values[d, k]`` belongs to the instant ``start_ms + (d * per_day + k + 1) * dt_min`` minutes
    (UTC milliseconds); NaN where there is no reading close enough.
    """

    start_ms: int
    dt_min: int
    values: npt.NDArray[np.float64]

    @property
    def per_day(self) -> int:
        """Grid points per day."""
        return 1440 // self.dt_min

    @property
    def flat(self) -> npt.NDArray[np.float64]:
        """All grid values in time order (a view, not a copy)."""
        return self.values.reshape(-1)

    def times_ms(self) -> npt.NDArray[np.int64]:
        """The UTC instant (ms) of every grid point, in time order."""
        steps = np.arange(1, self.values.size + 1, dtype=np.int64)
        return self.start_ms + steps * (self.dt_min * MINUTE_MS)


def sampling_interval_min(utc_ms: npt.NDArray[np.int64]) -> int:
    """The median step between consecutive distinct readings in whole minutes (ties to even).

    ``utc_ms`` must be sorted; at least two distinct instants are needed (``ValueError`` otherwise).
    """
    steps = np.diff(utc_ms)
    steps = steps[steps > 0]
    if steps.size == 0:
        msg = "at least two readings at different instants are needed"
        raise ValueError(msg)
    return int(np.round(np.median(steps) / MINUTE_MS))


def grid_step_min(interval_min: int) -> int:
    """The grid step for a sampling interval: a divisor of a day (see the module notes)."""
    step = max(interval_min, 1)
    if 1440 % step:
        if step > 20:  # noqa: PLR2004 - iglu's choice for long intervals
            step = 20
        else:
            remainder = step % 5
            step = step + 5 - remainder if remainder > 2 else step - remainder  # noqa: PLR2004
    return max(step, 1)


def _last_of_equal(
    utc_ms: npt.NDArray[np.int64], mgdl: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Sorted readings with, of readings at the same instant, only the last one."""
    order = np.argsort(utc_ms, kind="stable")
    times, values = utc_ms[order], mgdl[order]
    keep = np.ones(times.size, np.bool_)
    keep[:-1] = times[1:] != times[:-1]
    return times[keep], values[keep]


def day_grid(
    utc_ms: npt.NDArray[np.int64],
    mgdl: npt.NDArray[np.float64],
    *,
    first_offset_min: int,
    dt_min: int | None = None,
    inter_gap_min: int = DEFAULT_INTER_GAP_MIN,
) -> DayGrid | None:
    """Interpolate readings onto a grid of whole local days (see the module notes).

    ``utc_ms`` are UTC instants (ms), ``mgdl`` the readings, ``first_offset_min`` the UTC offset of
    the local time zone at the first reading (it places the first local midnight); ``dt_min``
    overrides the grid step. ``None`` for fewer than two readings at distinct instants or a
    sampling interval longer than ``inter_gap_min``.
    """
    finite = np.isfinite(mgdl)
    times, values = _last_of_equal(np.asarray(utc_ms)[finite], np.asarray(mgdl, np.float64)[finite])
    if times.size < 2:  # noqa: PLR2004
        return None
    step = dt_min if dt_min is not None else sampling_interval_min(times)
    if step > inter_gap_min:
        return None
    step = grid_step_min(step)
    offset_ms = first_offset_min * MINUTE_MS
    start = (int(times[0]) + offset_ms) // DAY_MS * DAY_MS - offset_ms
    days = math.ceil((int(times[-1]) - int(times[0])) / DAY_MS + 1)
    per_day = 1440 // step
    grid = start + np.arange(1, days * per_day + 1, dtype=np.int64) * (step * MINUTE_MS)
    out = np.interp(grid.astype(np.float64), times.astype(np.float64), values)
    after = np.searchsorted(times, grid, side="right")  # first reading after each grid point
    outside = (grid < times[0]) | (grid > times[-1])
    inside = np.clip(after, 1, times.size - 1)
    wide = (times[inside] - times[inside - 1]) > inter_gap_min * MINUTE_MS
    # A grid point strictly between two readings that are too far apart is a gap.
    between = (grid > times[inside - 1]) & (grid < times[inside])
    out[outside | (wide & between)] = np.nan
    return DayGrid(start_ms=start, dt_min=step, values=out.reshape(days, per_day))
