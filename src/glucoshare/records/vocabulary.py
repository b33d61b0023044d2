"""The canonical vocabulary of record types and subtypes (after Tidepool's data model).

``value`` holds one number per record, always in the canonical unit of its type:

========================  =====================================  ==================================
type                      subtypes                               ``value`` (canonical unit)
========================  =====================================  ==================================
``cbg``                   ``sensor`` (regular series), ``scan``  glucose, mg/dL
``smbg``                  ``meter``, ``manual``, ``calibration`` glucose, mg/dL
``bloodKetone``           (none)                                 β-hydroxybutyrate, mmol/L
``basal``                 ``scheduled``, ``temp``, ``suspend``,  rate, U/h
                          ``automated``
``bolus``                 ``normal``, ``extended``, ``dual``,    delivered insulin, U
                          ``automated``
``wizard``                (none)                                 carbohydrate input, g
``food``                  (none)                                 carbohydrate, g
``insulin``               ``rapid``, ``long``, ``unknown``        dose, U
``deviceEvent``           see :data:`DEVICE_EVENT_SUBTYPES`       volume in U for ``prime``, else none
``pumpSettings``          (none)                                 none (schedules in the payload)
``cgmSettings``           (none)                                 none (alert thresholds in payload)
``note``                  (none)                                 none (text in the payload)
``physicalActivity``      ``light``, ``medium``, ``heavy``,      none (duration in ``duration_ms``)
                          ``unknown``
========================  =====================================  ==================================
"""

from __future__ import annotations

import enum
from typing import Final

MGDL_PER_MMOLL: Final = 18.01559
"""mg/dL per mmol/L of glucose, as Tidepool uses it (molar mass 180.156 g/mol)."""


class RecordType(enum.StrEnum):
    """Canonical record types; the values are the vocabulary of CONTRACT.md."""

    CBG = "cbg"
    SMBG = "smbg"
    BLOOD_KETONE = "bloodKetone"
    BASAL = "basal"
    BOLUS = "bolus"
    WIZARD = "wizard"
    FOOD = "food"
    INSULIN = "insulin"
    DEVICE_EVENT = "deviceEvent"
    PUMP_SETTINGS = "pumpSettings"
    CGM_SETTINGS = "cgmSettings"
    NOTE = "note"
    PHYSICAL_ACTIVITY = "physicalActivity"


RECORD_TYPES: Final = tuple(t.value for t in RecordType)

DEVICE_EVENT_SUBTYPES: Final = frozenset(
    {
        "alarm",
        "prime",
        "reservoirChange",
        "siteChange",
        "sensorStart",
        "suspend",
        "resume",
        "timeChange",
        "other",
    }
)

SUBTYPES: Final[dict[str, frozenset[str]]] = {
    RecordType.CBG: frozenset({"sensor", "scan"}),
    RecordType.SMBG: frozenset({"meter", "manual", "calibration"}),
    RecordType.BLOOD_KETONE: frozenset({""}),
    RecordType.BASAL: frozenset({"scheduled", "temp", "suspend", "automated"}),
    RecordType.BOLUS: frozenset({"normal", "extended", "dual", "automated"}),
    RecordType.WIZARD: frozenset({""}),
    RecordType.FOOD: frozenset({""}),
    RecordType.INSULIN: frozenset({"rapid", "long", "unknown"}),
    RecordType.DEVICE_EVENT: DEVICE_EVENT_SUBTYPES,
    RecordType.PUMP_SETTINGS: frozenset({""}),
    RecordType.CGM_SETTINGS: frozenset({""}),
    RecordType.NOTE: frozenset({""}),
    RecordType.PHYSICAL_ACTIVITY: frozenset({"light", "medium", "heavy", "unknown"}),
}

VALUE_UNITS: Final[dict[str, str | None]] = {
    RecordType.CBG: "mg/dL",
    RecordType.SMBG: "mg/dL",
    RecordType.BLOOD_KETONE: "mmol/L",
    RecordType.BASAL: "U/h",
    RecordType.BOLUS: "U",
    RecordType.WIZARD: "g",
    RecordType.FOOD: "g",
    RecordType.INSULIN: "U",
    RecordType.DEVICE_EVENT: "U",
    RecordType.PUMP_SETTINGS: None,
    RecordType.CGM_SETTINGS: None,
    RecordType.NOTE: None,
    RecordType.PHYSICAL_ACTIVITY: None,
}


def mmol_to_mgdl(value: float) -> float:
    """Convert a glucose concentration from mmol/L to mg/dL (× 18.01559)."""
    return value * MGDL_PER_MMOLL


def mgdl_to_mmol(value: float) -> float:
    """Convert a glucose concentration from mg/dL to mmol/L (÷ 18.01559)."""
    return value / MGDL_PER_MMOLL
