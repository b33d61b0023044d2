"""Small building blocks of the reports' SVG charts: scales, paths with gaps, bands, text.

Charts are written as SVG markup (crisp at any print resolution, a few kilobytes each) so the same
drawing serves the web page and the PDF. Coordinates are rounded to 0.1 px; every text is escaped.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt
from markupsafe import Markup, escape

Floats = npt.NDArray[np.float64]

PAINT: dict[str, str] = {
    "tick": 'font-size="9" fill="#555"',
    "small": 'font-size="8" fill="#444"',
    "strong": 'font-weight="bold"',
    "grid": 'stroke="#e3e3e3" stroke-width="1"',
    "axis": 'stroke="#999" stroke-width="1"',
    "target": 'stroke="#2f9e44" stroke-width="1.2"',
    "band5": 'fill="#c5d8ef"',
    "band25": 'fill="#5b8fcf"',
    "band25b": 'fill="#f4b183" fill-opacity="0.45"',
    "median": 'fill="none" stroke="#1b3f73" stroke-width="2"',
    "median2": 'fill="none" stroke="#c2410c" stroke-width="2" stroke-dasharray="5 3"',
    "trace": 'fill="none" stroke="#1b3f73" stroke-width="1.1" stroke-linecap="round" stroke-linejoin="round"',
    "faint": 'fill="none" stroke="#8aa7cc" stroke-width="0.6" stroke-opacity="0.7"',
    "vlow": 'fill="#8b0000"',
    "low": 'fill="#e03131"',
    "inrange": 'fill="#2f9e44"',
    "high": 'fill="#f5c400"',
    "vhigh": 'fill="#f08c00"',
    "above": 'fill="#f5c400" fill-opacity="0.55"',
    "below": 'fill="#e03131" fill-opacity="0.55"',
    "targetband": 'fill="#e6f4ea"',
    "meter": 'fill="#fff" stroke="#1b3f73" stroke-width="1.2"',
    "bolus": 'fill="#364fc7"',
    "carbs": 'fill="#f59f00"',
    "scheduled": 'fill="#74c0fc"',
    "temp": 'fill="#4dabf7" fill-opacity="0.6"',
    "automated": 'fill="#9775fa"',
    "suspend": 'fill="#adb5bd"',
    "event": 'fill="#495057"',
    "empty": 'fill="#f1f3f5"',
    "frame": 'fill="none" stroke="#ccc"',
}
"""How each class of chart element is painted, as SVG presentation attributes.

Attributes rather than a style sheet: the PDF renderer does not apply the page's CSS to inline SVG,
and the web app's Content-Security-Policy forbids inline ``<style>``; attributes work in both. The
class stays on every element for the web app's own styling."""


def paint(cls: str) -> str:
    """``class="…"`` and the presentation attributes of each class in ``cls`` (space separated)."""
    attributes = " ".join(PAINT[name] for name in cls.split() if name in PAINT)
    return f'class="{cls}" {attributes}' if attributes else f'class="{cls}"'


@dataclasses.dataclass(frozen=True, slots=True)
class Scale:
    """A linear map from data values ``[lo, hi]`` to pixels ``[start, end]`` (``end`` may be < ``start``)."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        """The pixel position of ``value`` (values beyond the domain are clamped)."""
        clamped = min(max(value, self.lo), self.hi)
        return self.start + (clamped - self.lo) / (self.hi - self.lo) * (self.end - self.start)

    def many(self, values: Floats) -> Floats:
        """:meth:`__call__` for an array (NaN stays NaN)."""
        clamped = np.clip(values, self.lo, self.hi)
        return self.start + (clamped - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def num(value: float) -> str:
    """A coordinate as short text (0.1 px)."""
    text = f"{value:.1f}"
    return text.removesuffix(".0")


def _runs(valid: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of consecutive ``True`` values."""
    edges = np.diff(np.concatenate(([0], valid.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def polyline_path(xs: Floats, ys: Floats, *, max_gap: float | None = None) -> str:
    """An SVG path ``d`` through the points, broken where a value is NaN or ``xs`` jumps by > ``max_gap``."""
    valid = np.isfinite(xs) & np.isfinite(ys)
    parts: list[str] = []
    for start, stop in _runs(valid):
        x, y = xs[start:stop], ys[start:stop]
        breaks = [0, len(x)]
        if max_gap is not None:
            breaks = [0, *(np.flatnonzero(np.diff(x) > max_gap) + 1).tolist(), len(x)]
        for a, b in itertools.pairwise(breaks):
            points = [f"{num(px)},{num(py)}" for px, py in zip(x[a:b].tolist(), y[a:b].tolist(), strict=True)]
            if len(points) == 1:
                points.append(points[0])  # a lone reading still shows as a dot with round caps
            parts.append("M" + points[0] + " L" + " ".join(points[1:]))
    return " ".join(parts)


def band_path(xs: Floats, lower: Floats, upper: Floats) -> str:
    """A closed path ``d`` filling between two curves, one polygon per run of finite values."""
    valid = np.isfinite(xs) & np.isfinite(lower) & np.isfinite(upper)
    parts = []
    for start, stop in _runs(valid):
        x = xs[start:stop].tolist()
        top = upper[start:stop].tolist()
        bottom = lower[start:stop].tolist()
        forward = " ".join(f"{num(a)},{num(b)}" for a, b in zip(x, top, strict=True))
        back = " ".join(f"{num(a)},{num(b)}" for a, b in zip(reversed(x), reversed(bottom), strict=True))
        parts.append(f"M{forward} L{back} Z")
    return " ".join(parts)


def text(x: float, y: float, content: object, *, cls: str = "", anchor: str = "start") -> str:
    """A ``<text>`` element (content escaped)."""
    klass = f" {paint(cls)}" if cls else ""
    return f'<text x="{num(x)}" y="{num(y)}" text-anchor="{anchor}"{klass}>{escape(str(content))}</text>'


def line(x1: float, y1: float, x2: float, y2: float, *, cls: str) -> str:
    """A ``<line>`` element."""
    return f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" {paint(cls)}/>'


def rect(x: float, y: float, width: float, height: float, *, cls: str, title: str | None = None) -> str:
    """A ``<rect>`` element, with a tooltip ``title`` when given."""
    body = f"<title>{escape(title)}</title>" if title else ""
    geometry = f'x="{num(x)}" y="{num(y)}" width="{num(max(width, 0))}" height="{num(max(height, 0))}"'
    return f"<rect {geometry} {paint(cls)}>{body}</rect>" if body else f"<rect {geometry} {paint(cls)}/>"


def circle(cx: float, cy: float, r: float, *, cls: str, title: str | None = None) -> str:
    """A ``<circle>`` element, with a tooltip ``title`` when given."""
    body = f"<title>{escape(title)}</title>" if title else ""
    return f'<circle cx="{num(cx)}" cy="{num(cy)}" r="{num(r)}" {paint(cls)}>{body}</circle>'


def marker(x: float, y: float, *, cls: str, title: str) -> str:
    """A small triangle pointing up at ``(x, y)``, with a tooltip."""
    return f'<path d="M{num(x)},{num(y)} l5,8 l-10,0 Z" {paint(cls)}><title>{escape(title)}</title></path>'


def clip_rect(ident: str, x: float, y: float, width: float, height: float) -> str:
    """A ``<clipPath>`` of one rectangle."""
    box = f'x="{num(x)}" y="{num(y)}" width="{num(max(width, 0))}" height="{num(max(height, 0))}"'
    return f'<clipPath id="{ident}"><rect {box}/></clipPath>'


def path(d: str, *, cls: str) -> str:
    """A ``<path>`` element (nothing for an empty path)."""
    return f'<path d="{d}" {paint(cls)}/>' if d else ""


def svg(width: float, height: float, parts: Iterable[str], *, label: str) -> Markup:
    """The whole ``<svg>``, sized in CSS pixels and scalable, with an accessible label."""
    body = "".join(parts)
    return Markup(  # noqa: S704 - every part above escapes its text
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {num(width)} {num(height)}" '
        f'width="{num(width)}" height="{num(height)}" role="img" aria-label="{escape(label)}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="10" fill="#222">'
        f"{body}</svg>"
    )


def hour_ticks(scale: Scale, top: float, bottom: float, *, every_hours: int = 3) -> list[str]:
    """Vertical grid lines and labels (``00:00``, ``03:00``…) across a day in minutes."""
    parts = []
    for hour in range(0, 25, every_hours):
        x = scale(hour * 60.0)
        parts.append(line(x, top, x, bottom, cls="grid"))
        label = f"{hour % 24:02d}:00"
        parts.append(text(x, bottom + 12, label, cls="tick", anchor="middle"))
    return parts


def finite(values: Sequence[float | None]) -> list[float]:
    """The finite numbers among ``values``."""
    return [v for v in values if v is not None and math.isfinite(v)]
