"""The daily chart's basal lane with rates that are not known (a temporary basal given as a percentage)."""

from __future__ import annotations

import numpy as np

from glucoshare.reports.charts import DayData, day_chart
from glucoshare.reports.units import Glucose


def _day(rates: list[float], kinds: tuple[str, ...]) -> DayData:
    empty = np.empty(0, np.float64)
    starts = np.arange(len(rates), dtype=np.float64) * 120.0
    return DayData(
        cgm_min=np.array([0.0, 5.0]),
        cgm_mgdl=np.array([120.0, 125.0]),
        meter_min=empty,
        meter_mgdl=empty,
        bolus_min=empty,
        bolus_u=empty,
        carbs_min=empty,
        carbs_g=empty,
        basal_start_min=starts,
        basal_end_min=starts + 120.0,
        basal_rate=np.array(rates, np.float64),
        basal_kind=kinds,
        event_min=empty,
        event_label=(),
    )


def test_known_rates_add_up_and_a_suspension_delivers_nothing() -> None:
    day = _day([1.0, 0.0, 0.5], ("scheduled", "suspend", "temp"))
    assert day.basal_units() == 3.0


def test_an_unknown_rate_makes_the_day_total_unknown_and_is_drawn_as_such() -> None:
    day = _day([1.0, float("nan")], ("scheduled", "temp"))
    assert day.basal_units() is None
    chart = str(day_chart(day, Glucose("mg/dL"), target_low=70, target_high=180))
    assert "temp, rate not known" in chart
    assert "nan" not in chart.lower()
