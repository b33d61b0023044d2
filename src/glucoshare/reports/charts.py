"""The reports' charts as SVG: time in ranges, the AGP, daily profiles, one day, trends, comparisons.

Every chart draws glucose in mg/dL on a fixed scale (0–350 mg/dL; higher values at the top edge)
and labels it in the reader's unit (:class:`~glucoshare.reports.units.Glucose`). Colours follow
the AGP report's: red below range, green in range, yellow and orange above. Each SVG carries its
paint as presentation attributes (:data:`glucoshare.reports.svg.PAINT`), so browsers and the PDF
renderer draw it the same.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from markupsafe import Markup

from glucoshare.analytics.agp import AgpProfile, DailyProfile, TimeOfDayBins
from glucoshare.reports.svg import (
    Floats,
    Scale,
    band_path,
    circle,
    clip_rect,
    hour_ticks,
    line,
    marker,
    paint,
    path,
    polyline_path,
    rect,
    svg,
    text,
)
from glucoshare.reports.units import Glucose, duration_per_day, pct

GLUCOSE_TOP = 350.0
"""The top of every glucose axis (mg/dL); higher readings are drawn at the edge."""
DAY_MINUTES = 1440.0


@dataclasses.dataclass(frozen=True, slots=True)
class _DayFrame:
    """The plot area of a glucose-over-one-day chart: minutes after midnight across, mg/dL up."""

    left: float
    right: float
    top: float
    bottom: float

    @property
    def x(self) -> Scale:
        return Scale(0.0, DAY_MINUTES, self.left, self.right)

    @property
    def y(self) -> Scale:
        return Scale(0.0, GLUCOSE_TOP, self.bottom, self.top)

    @property
    def gap(self) -> float:
        """A trace breaks where readings are further apart than half an hour."""
        return (self.right - self.left) / 48

    def axes(self, glucose: Glucose) -> list[str]:
        """Glucose grid lines labelled in the reader's unit, hour lines and the unit's name."""
        parts = _glucose_axis(glucose, self.y, self.left, self.right, (54.0, 70.0, 180.0, 250.0, GLUCOSE_TOP))
        parts += hour_ticks(self.x, self.top, self.bottom)
        parts.append(text(self.left - 30, self.top - 6, glucose.unit, cls="tick"))
        return parts

    def target_lines(self, low: float, high: float) -> list[str]:
        """The target range's two lines."""
        return [line(self.left, self.y(v), self.right, self.y(v), cls="target") for v in (low, high)]

    def target_band(self, low: float, high: float) -> str:
        """The target range as a shaded band."""
        return rect(
            self.left, self.y(high), self.right - self.left, self.y(low) - self.y(high), cls="targetband"
        )

    def trace(self, minutes: Floats, mgdl: Floats, *, cls: str = "trace") -> str:
        """One day's readings as a line (broken at gaps)."""
        return path(polyline_path(self.x.many(minutes), self.y.many(mgdl), max_gap=self.gap), cls=cls)


def _glucose_axis(
    glucose: Glucose, scale: Scale, left: float, right: float, marks: Sequence[float]
) -> list[str]:
    parts = []
    for mark in marks:
        y = scale(mark)
        parts.append(line(left, y, right, y, cls="grid"))
        parts.append(text(left - 4, y + 3, glucose.fmt(mark), cls="tick", anchor="end"))
    return parts


@dataclasses.dataclass(frozen=True, slots=True)
class RangeRow:
    """One band of the time-in-ranges bar."""

    key: str
    """``very_high``, ``high``, ``in_range``, ``low`` or ``very_low``."""
    label: str
    pct: float | None
    goal: str


_BAND_CLASS = {"very_high": "vhigh", "high": "high", "in_range": "inrange", "low": "low", "very_low": "vlow"}


def time_in_ranges_bar(rows: Sequence[RangeRow], *, width: float = 330, height: float = 180) -> Markup:
    """The AGP's stacked time-in-ranges bar (very high on top) with %, time per day and goals."""
    bar_x, bar_w, top, bottom = 8.0, 34.0, 8.0, height - 8
    total = sum(r.pct or 0.0 for r in rows) or 100.0
    usable = bottom - top - 2 * (len(rows) - 1)
    parts: list[str] = []
    y = top
    label_ys = []
    for row in rows:
        share = (row.pct or 0.0) / total
        h = max(usable * share, 1.5 if (row.pct or 0) > 0 else 0.0)
        parts.append(
            rect(bar_x, y, bar_w, h, cls=_BAND_CLASS[row.key], title=f"{row.label}: {pct(row.pct, 1)}")
        )
        label_ys.append(y + h / 2)
        y += h + 2
    # Labels spread evenly so small bands stay readable; a thin leader joins label and band.
    spacing = (bottom - top) / len(rows)
    for at, row in enumerate(rows):
        ly = top + spacing * (at + 0.5)
        parts.append(line(bar_x + bar_w + 2, label_ys[at], bar_x + bar_w + 14, ly, cls="axis"))
        parts.append(text(bar_x + bar_w + 18, ly - 2, row.label, cls="strong"))
        parts.append(text(width - 4, ly - 2, pct(row.pct, 0), cls="strong", anchor="end"))
        detail = (
            f"{duration_per_day(row.pct)} per day · goal {row.goal}"
            if row.goal
            else duration_per_day(row.pct)
        )
        parts.append(text(bar_x + bar_w + 18, ly + 9, detail, cls="small"))
    label = "Time in ranges: " + ", ".join(f"{r.label} {pct(r.pct, 0)}" for r in rows)
    return svg(width, height, parts, label=label)


def agp_chart(
    profile: AgpProfile,
    glucose: Glucose,
    *,
    target_low: float,
    target_high: float,
    width: float = 720,
    height: float = 240,
) -> Markup:
    """The AGP graph: 5–95 % and 25–75 % bands, the median and the target lines over one day."""
    frame = _DayFrame(40.0, width - 30, 14.0, height - 22)
    x, y = frame.x, frame.y
    minutes = np.append(profile.slot_start_min.astype(np.float64), DAY_MINUTES)

    def closed(curve: Floats) -> Floats:  # the day is a circle: 24:00 repeats 00:00
        return np.append(curve, curve[:1])

    xs = x.many(minutes)
    parts = frame.axes(glucose)
    parts.append(path(band_path(xs, y.many(closed(profile.p5)), y.many(closed(profile.p95))), cls="band5"))
    parts.append(path(band_path(xs, y.many(closed(profile.p25)), y.many(closed(profile.p75))), cls="band25"))
    parts += frame.target_lines(target_low, target_high)
    parts.append(path(polyline_path(xs, y.many(closed(profile.p50))), cls="median"))
    parts.append(line(frame.left, frame.bottom, frame.right, frame.bottom, cls="axis"))
    _percentile_labels(parts, profile, x, y)
    label = (
        f"Ambulatory glucose profile over {profile.days} days: median, 25–75 % and 5–95 % ranges "
        f"by time of day; target {glucose.span(target_low, target_high)}"
    )
    return svg(width, height, parts, label=label)


def _percentile_labels(parts: list[str], profile: AgpProfile, x: Scale, y: Scale) -> None:
    """Name the curves at the right edge where they have values (as the AGP report does)."""
    for name, curve in (
        ("95%", profile.p95),
        ("75%", profile.p75),
        ("50%", profile.p50),
        ("25%", profile.p25),
        ("5%", profile.p5),
    ):
        finite = np.flatnonzero(np.isfinite(curve))
        if finite.size:
            last = int(finite[-1])
            parts.append(
                text(x(float(profile.slot_start_min[last])) + 2, y(float(curve[last])) + 3, name, cls="small")
            )


def daily_profiles_chart(
    profiles: Sequence[DailyProfile],
    glucose: Glucose,
    *,
    target_low: float,
    target_high: float,
    columns: int = 7,
    width: float = 720,
) -> Markup:
    """One small midnight-to-midnight panel per day, shaded above the target and below it."""
    gap, label_h = 4.0, 12.0
    cell_w = (width - gap * (columns - 1)) / columns
    cell_h = 46.0
    rows = max(1, -(-len(profiles) // columns))
    height = rows * (cell_h + label_h + gap)
    parts: list[str] = []
    for at, day in enumerate(profiles):
        col, row = at % columns, at // columns
        left = col * (cell_w + gap)
        top = row * (cell_h + label_h + gap) + label_h
        x = Scale(0.0, DAY_MINUTES, left, left + cell_w)
        y = Scale(0.0, GLUCOSE_TOP, top + cell_h, top)
        parts.append(text(left + 2, top - 3, day.date.strftime("%a %d %b"), cls="small"))
        parts.append(rect(left, top, cell_w, cell_h, cls="frame" if day.readings else "empty"))
        parts.append(rect(left, y(target_high), cell_w, y(target_low) - y(target_high), cls="targetband"))
        if day.readings:
            xs, ys = x.many(day.minutes), y.many(day.mgdl)
            clip_high, clip_low = f"hi{at}", f"lo{at}"
            parts.append(clip_rect(clip_high, left, top, cell_w, y(target_high) - top))
            parts.append(clip_rect(clip_low, left, y(target_low), cell_w, top + cell_h - y(target_low)))
            above = _area_to(xs, ys, y(target_high))
            below = _area_to(xs, ys, y(target_low))
            if above:
                parts.append(f'<path d="{above}" {paint("above")} clip-path="url(#{clip_high})"/>')
            if below:
                parts.append(f'<path d="{below}" {paint("below")} clip-path="url(#{clip_low})"/>')
            parts.append(path(polyline_path(xs, ys, max_gap=cell_w / 48), cls="trace"))
        else:
            parts.append(
                text(left + cell_w / 2, top + cell_h / 2 + 3, "no data", cls="small", anchor="middle")
            )
    label = (
        f"Daily glucose profiles of {len(profiles)} days, shaded above and below the target range "
        f"{glucose.span(target_low, target_high)}"
    )
    return svg(width, height, parts, label=label)


def _area_to(xs: Floats, ys: Floats, baseline: float) -> str:
    """Closed areas between a trace and a horizontal line (clipped by the caller to one side)."""
    valid = np.isfinite(xs) & np.isfinite(ys)
    if not valid.any():
        return ""
    base = np.full(xs.shape, baseline)
    return band_path(np.where(valid, xs, np.nan), base, ys)


@dataclasses.dataclass(frozen=True, slots=True)
class DayData:
    """Everything one day's chart draws, on the day's local time axis (minutes after midnight)."""

    cgm_min: Floats
    cgm_mgdl: Floats
    meter_min: Floats
    meter_mgdl: Floats
    bolus_min: Floats
    bolus_u: Floats
    carbs_min: Floats
    carbs_g: Floats
    basal_start_min: Floats
    basal_end_min: Floats
    basal_rate: Floats
    basal_kind: tuple[str, ...]
    """``scheduled``, ``temp``, ``suspend`` or ``automated`` per segment."""
    event_min: Floats
    event_label: tuple[str, ...]

    def basal_units(self) -> float | None:
        """Basal insulin delivered over the day (U): rate × duration per segment; suspensions give none.

        ``None`` when there is no basal, or when a segment's rate is not known (NaN).
        """
        if not self.basal_rate.size:
            return None
        delivering = np.array([kind != "suspend" for kind in self.basal_kind], np.bool_)
        if bool(np.isnan(self.basal_rate[delivering]).any()):
            return None
        hours = (self.basal_end_min - self.basal_start_min) / 60.0
        return float(np.sum(np.where(delivering, self.basal_rate, 0.0) * hours))


def day_chart(
    day: DayData, glucose: Glucose, *, target_low: float, target_high: float, width: float = 720
) -> Markup:
    """One day: CGM trace and meter readings, boluses and carbs, the basal lane and device events."""
    frame = _DayFrame(40.0, width - 10, 14.0, 190.0)
    left, right, g_bottom = frame.left, frame.right, frame.bottom
    x, y = frame.x, frame.y
    dose_top, dose_bottom = 205.0, 255.0
    basal_top, basal_bottom = 270.0, 310.0
    event_y = 330.0
    height = 350.0
    parts = [frame.target_band(target_low, target_high), *frame.axes(glucose)]
    # The hour lines run on through the lanes below.
    parts += [line(x(h * 60.0), g_bottom + 14, x(h * 60.0), event_y + 4, cls="grid") for h in range(0, 25, 3)]
    parts.append(frame.trace(day.cgm_min, day.cgm_mgdl))
    for minute, value in zip(day.meter_min.tolist(), day.meter_mgdl.tolist(), strict=True):
        parts.append(circle(x(minute), y(value), 3.2, cls="meter", title=glucose.with_unit(value)))
    # Boluses as bars (height by units, labelled), carbs as circles (labelled grams).
    parts.append(text(left - 4, dose_top + 8, "bolus", cls="tick", anchor="end"))
    biggest = max([1.0, *day.bolus_u.tolist()])
    for minute, units in zip(day.bolus_min.tolist(), day.bolus_u.tolist(), strict=True):
        h = (dose_bottom - dose_top - 10) * units / biggest
        parts.append(rect(x(minute) - 2, dose_bottom - h, 4, h, cls="bolus", title=f"bolus {units:.2f} U"))
        parts.append(text(x(minute), dose_bottom - h - 2, f"{units:.1f}", cls="small", anchor="middle"))
    for minute, grams in zip(day.carbs_min.tolist(), day.carbs_g.tolist(), strict=True):
        parts.append(circle(x(minute), dose_top + 6, 7, cls="carbs", title=f"{grams:.0f} g carbohydrate"))
        parts.append(text(x(minute), dose_top + 9, f"{grams:.0f}", cls="small", anchor="middle"))
    # Basal lane: rate as height, kind as colour.
    parts.append(text(left - 4, basal_top + 8, "basal", cls="tick", anchor="end"))
    top_rate = max([0.5, *(r for r in day.basal_rate.tolist() if not math.isnan(r))])
    for start, end, rate, kind in zip(
        day.basal_start_min.tolist(),
        day.basal_end_min.tolist(),
        day.basal_rate.tolist(),
        day.basal_kind,
        strict=True,
    ):
        unknown = math.isnan(rate)  # a temporary basal given only as a percentage of the schedule
        h = (
            (basal_bottom - basal_top) * (rate / top_rate)
            if kind != "suspend" and not unknown
            else (basal_bottom - basal_top) * 0.15
        )
        title = f"{kind}, rate not known" if unknown else f"{kind} {rate:.2f} U/h"
        parts.append(rect(x(start), basal_bottom - h, x(end) - x(start), h, cls=kind, title=title))
    parts.append(line(left, basal_bottom, right, basal_bottom, cls="axis"))
    parts.append(text(left - 4, event_y + 3, "events", cls="tick", anchor="end"))
    for minute, label in zip(day.event_min.tolist(), day.event_label, strict=True):
        parts.append(marker(x(minute), event_y - 6, cls="event", title=label))
    label = "One day of glucose, doses, basal and events"
    return svg(width, height, parts, label=label)


def trends_chart(
    bins: TimeOfDayBins,
    glucose: Glucose,
    *,
    target_low: float,
    target_high: float,
    day_traces: Sequence[tuple[Floats, Floats]] = (),
    meter: tuple[Floats, Floats] | None = None,
    width: float = 720,
    height: float = 260,
) -> Markup:
    """Trends by time of day: each day faint, then min–max, 10–90 % and 25–75 % ranges and the median."""
    frame = _DayFrame(40.0, width - 10, 14.0, height - 22)
    x, y = frame.x, frame.y
    parts = [frame.target_band(target_low, target_high), *frame.axes(glucose)]
    parts += [frame.trace(minutes, values, cls="faint") for minutes, values in day_traces]
    bin_w = (frame.right - frame.left) * bins.bin_minutes / DAY_MINUTES
    p10, p25, p50, p75, p90 = bins.percentiles
    for k, start in enumerate(bins.start_min.tolist()):
        if not bins.readings[k]:
            continue
        x0 = x(float(start)) + bin_w * 0.15
        w = bin_w * 0.7
        parts.append(
            line(x0 + w / 2, y(float(bins.maximum[k])), x0 + w / 2, y(float(bins.minimum[k])), cls="axis")
        )
        parts.append(rect(x0, y(float(p90[k])), w, y(float(p10[k])) - y(float(p90[k])), cls="band5"))
        parts.append(rect(x0, y(float(p75[k])), w, y(float(p25[k])) - y(float(p75[k])), cls="band25"))
        parts.append(line(x0, y(float(p50[k])), x0 + w, y(float(p50[k])), cls="median"))
    if meter is not None:
        for minute, value in zip(meter[0].tolist(), meter[1].tolist(), strict=True):
            parts.append(circle(x(minute), y(value), 2.6, cls="meter"))
    parts.append(line(frame.left, frame.bottom, frame.right, frame.bottom, cls="axis"))
    label = f"Glucose by time of day in {bins.bin_minutes}-minute bins: median, 25–75 %, 10–90 % and extremes"
    return svg(width, height, parts, label=label)


def comparison_chart(
    current: AgpProfile,
    previous: AgpProfile,
    glucose: Glucose,
    *,
    target_low: float,
    target_high: float,
    width: float = 720,
    height: float = 230,
) -> Markup:
    """Two periods' AGP medians and 25–75 % ranges over a day (this one solid blue, the one before orange)."""
    frame = _DayFrame(40.0, width - 10, 14.0, height - 22)
    x, y = frame.x, frame.y
    parts = frame.axes(glucose)
    for profile, band, median in ((previous, "band25b", "median2"), (current, "band25", "median")):
        xs = x.many(profile.slot_start_min.astype(np.float64))
        parts.append(path(band_path(xs, y.many(profile.p25), y.many(profile.p75)), cls=band))
        parts.append(path(polyline_path(xs, y.many(profile.p50)), cls=median))
    parts += frame.target_lines(target_low, target_high)
    parts.append(line(frame.left, frame.bottom, frame.right, frame.bottom, cls="axis"))
    label = "Median glucose and 25–75 % range by time of day, this period against the previous one"
    return svg(width, height, parts, label=label)


def window_chart(
    traces: Sequence[tuple[str, Floats, Floats]],
    glucose: Glucose,
    *,
    window: tuple[int, int],
    target_low: float,
    target_high: float,
    width: float = 720,
    height: float = 170,
) -> Markup:
    """The evidence of a pattern: the days' traces over one day with the pattern's window shaded."""
    frame = _DayFrame(40.0, width - 10, 14.0, height - 22)
    x = frame.x
    start, end = window
    spans = [(start, end)] if end > start else [(start, int(DAY_MINUTES)), (0, end)]
    parts = [
        rect(x(float(a)), frame.top, x(float(b)) - x(float(a)), frame.bottom - frame.top, cls="empty")
        for a, b in spans
    ]
    parts += frame.axes(glucose)
    parts += frame.target_lines(target_low, target_high)
    parts += [frame.trace(minutes, values) for _, minutes, values in traces]
    label = f"Glucose on the {len(traces)} days of the pattern, its time window shaded"
    return svg(width, height, parts, label=label)
