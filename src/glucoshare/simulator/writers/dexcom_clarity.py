"""Write a simulated timeline as a Dexcom Clarity CSV export (research/formats.md §1)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from typing import Literal

from glucoshare.records.vocabulary import MGDL_PER_MMOLL
from glucoshare.simulator.timeline import Timeline
from glucoshare.simulator.writers.base import ExpectedRecord, WrittenExport

HEADERS = {
    "en": [
        "Index",
        "Timestamp (YYYY-MM-DDThh:mm:ss)",
        "Event Type",
        "Event Subtype",
        "Patient Info",
        "Device Info",
        "Source Device ID",
        "Glucose Value ({unit})",
        "Insulin Value (u)",
        "Carb Value (grams)",
        "Duration (hh:mm:ss)",
        "Glucose Rate of Change ({unit}/min)",
        "Transmitter Time (Long Integer)",
        "Transmitter ID",
    ],
    "de": [
        "Index",
        "Zeitstempel (JJJJ-MM-TTThh:mm:ss)",
        "Ereignisart",
        "Ereignis-Unterart",
        "Patienten-Info",
        "Geräteinfo",
        "Quellengerät-ID",
        "Glukosewert ({unit})",
        "Insulinwert (E)",
        "Kohlenh.-Wert (Gramm)",
        "Dauer (hh:mm:ss)",
        "Glukose-Änderungsgeschwindigkeit ({unit}/min)",
        "Transmitterzeit (Lange Ganzzahl)",
        "Transmitter-ID",
    ],
    "es": [
        "Índice",
        "Marca temporal (AAAA-MM-DDThh:mm:ss)",
        "Tipo de evento",
        "Subtipo de evento",
        "Información del paciente",
        "Información del dispositivo",
        "ID del dispositivo de origen",
        "Nivel de glucosa ({unit})",
        "Nivel de insulina (u)",
        "Nivel de carbohidratos (gramos)",
        "Duración (hh:mm:ss)",
        "Velocidad de cambio de la glucosa ({unit}/min)",
        "Hora del transmisor (entero largo)",
        "ID del transmisor",
    ],
}

WORDS = {
    "en": {
        "first": "FirstName",
        "last": "LastName",
        "device": "Device",
        "alert": "Alert",
        "egv": "EGV",
        "cal": "Calibration",
        "insulin": "Insulin",
        "carbs": "Carbs",
        "exercise": "Exercise",
        "health": "Health",
        "low": "Low",
        "high": "High",
        "fast": "Fast-Acting",
        "long": "Long-Acting",
        "light": "Light",
        "medium": "Medium",
        "heavy": "Heavy",
    },
    "de": {
        "first": "Vorname",
        "last": "Nachname",
        "device": "Gerät",
        "alert": "Warnung",
        "egv": "EGV",
        "cal": "Kalibrierung",
        "insulin": "Insulin",
        "carbs": "Kohlenhydrate",
        "exercise": "Bewegung",
        "health": "Gesundheit",
        "low": "Niedrig",
        "high": "Hoch",
        "fast": "Schnell wirkend",
        "long": "Lang wirkend",
        "light": "Leicht",
        "medium": "Mittel",
        "heavy": "Schwer",
    },
    "es": {
        "first": "Nombre",
        "last": "Apellido",
        "device": "Dispositivo",
        "alert": "Alerta",
        "egv": "Niveles estimados de glucosa",
        "cal": "Calibración",
        "insulin": "Insulina",
        "carbs": "Carbohidratos",
        "exercise": "Ejercicio",
        "health": "Salud",
        "low": "Bajo",
        "high": "Alto",
        "fast": "Acción rápida",
        "long": "Acción prolongada",
        "light": "Ligero",
        "medium": "Medio",
        "heavy": "Intenso",
    },
}


@dataclasses.dataclass(frozen=True, slots=True)
class ClarityOptions:
    """Variants of the Clarity layout."""

    language: Literal["en", "de", "es"] = "en"
    units: Literal["mg/dL", "mmol/L"] = "mg/dL"
    quoted: bool = False
    """Every field double-quoted (exports from Sept 2023 on; always for German/Spanish)."""
    order: Literal["device", "sorted"] = "device"
    """``device``: rows in the order things happened (the wall time steps back at a fall-back
    change); ``sorted``: rows sorted by wall time, the repeated hour interleaved."""
    crlf: bool = False


def _fmt_glucose(mgdl: float, units: str, decimal_comma: bool) -> str:
    if units == "mmol/L":
        text = f"{mgdl / MGDL_PER_MMOLL:.1f}"
        return text.replace(".", ",") if decimal_comma else text
    return str(round(mgdl))


def _read_back(text: str, units: str) -> float:
    value = float(text.replace(",", "."))
    return value * MGDL_PER_MMOLL if units == "mmol/L" else value


def write_clarity(timeline: Timeline, options: ClarityOptions | None = None) -> WrittenExport:
    """Write ``timeline`` as a Clarity export; returns the bytes and the records they hold."""
    opts = options or ClarityOptions()
    lang = opts.language
    words = WORDS[lang]
    quoted = opts.quoted or lang != "en"
    delimiter = "," if lang == "en" else ";"
    decimal_comma = lang != "en"
    unit_label = "mmol/L" if opts.units == "mmol/L" else "mg/dL"
    header = [h.format(unit=unit_label) for h in HEADERS[lang]]
    kind = timeline.profile.cgm
    app = "Dexcom G7" if kind == "dexcom_g7" else "Dexcom G6 Mobile App"
    source = "iOS G7" if kind == "dexcom_g7" else "Android G6"
    first, _, last = timeline.profile.name.partition(" ")
    preamble = [
        ["", words["first"], "", first, "", "", "", "", "", "", "", ""],
        ["", words["last"], "", last, "", "", "", "", "", "", "", ""],
        ["", words["device"], "", "", app, source, "", "", "", "", "", ""],
    ]
    alert_rows = [
        ("High", 250.0, "", ""),
        ("Low", 70.0, "", ""),
        ("Urgent Low", 55.0, "", ""),
        ("Signal Loss", None, "00:20:00", ""),
        ("Rise", None, "", "3"),
    ]
    for subtype, threshold, duration, rate in alert_rows:
        glucose = _fmt_glucose(threshold, opts.units, decimal_comma) if threshold is not None else ""
        preamble.append(["", words["alert"], subtype, "", "", source, glucose, "", "", duration, rate, ""])
    timed: list[tuple[int, dt.datetime, list[str], ExpectedRecord]] = []
    low, high = 40.0, 400.0
    for i in range(timeline.cgm_ms.size):
        utc_ms = int(timeline.cgm_ms[i]) // 1000 * 1000
        local = timeline.local(utc_ms)
        mgdl = float(timeline.cgm_mgdl[i])
        tx = timeline.transmitters[int(timeline.cgm_transmitter[i])]
        if mgdl < low:
            text, subtype, expected = (
                words["low"],
                words["low"],
                ExpectedRecord("cbg", "sensor", utc_ms, low, "low"),
            )
        elif mgdl > high:
            text, subtype, expected = (
                words["high"],
                words["high"],
                ExpectedRecord("cbg", "sensor", utc_ms, high, "high"),
            )
        else:
            text, subtype = _fmt_glucose(mgdl, opts.units, decimal_comma), ""
            expected = ExpectedRecord("cbg", "sensor", utc_ms, _read_back(text, opts.units))
        cells = [
            words["egv"],
            subtype,
            "",
            "",
            source,
            text,
            "",
            "",
            "",
            "",
            str(int(timeline.cgm_clock_s[i])),
            tx,
        ]
        timed.append((utc_ms, local, cells, expected))
    for event in timeline.events:
        utc_ms = event.utc_ms // 60_000 * 60_000  # the app logs events to the minute
        local = timeline.local(utc_ms)
        if event.kind == "fingerstick" and event.value is not None:
            utc_ms = event.utc_ms // 1000 * 1000
            local = timeline.local(utc_ms)
            text = _fmt_glucose(event.value, opts.units, decimal_comma)
            tx = timeline.transmitters[-1] if timeline.transmitters else ""
            cells = [words["cal"], "", "", "", source, text, "", "", "", "", "", tx]
            timed.append(
                (
                    utc_ms,
                    local,
                    cells,
                    ExpectedRecord("smbg", "calibration", utc_ms, _read_back(text, opts.units)),
                )
            )
        elif event.kind in ("pen_rapid", "pen_long") and event.value is not None:
            sub = words["fast"] if event.kind == "pen_rapid" else words["long"]
            amount = f"{event.value:.2f}".replace(".", "," if decimal_comma else ".")
            cells = [words["insulin"], sub, "", "", source, "", amount, "", "", "", "", ""]
            kind_name = "rapid" if event.kind == "pen_rapid" else "long"
            timed.append(
                (utc_ms, local, cells, ExpectedRecord("insulin", kind_name, utc_ms, round(event.value, 2)))
            )
        elif event.kind == "carbs" and event.value is not None:
            cells = [words["carbs"], "", "", "", source, "", "", str(round(event.value)), "", "", "", ""]
            timed.append(
                (utc_ms, local, cells, ExpectedRecord("food", "", utc_ms, float(round(event.value))))
            )
        elif event.kind == "exercise" and event.duration_s is not None:
            seconds = event.duration_s
            duration = f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
            cells = [
                words["exercise"],
                words[event.subtype],
                "",
                "",
                source,
                "",
                "",
                "",
                duration,
                "",
                "",
                "",
            ]
            timed.append(
                (utc_ms, local, cells, ExpectedRecord("physicalActivity", event.subtype, utc_ms, None))
            )
    timed.sort(key=lambda item: (item[0], item[2][0]))
    if opts.order == "sorted":
        timed.sort(key=lambda item: item[1])
    out = io.StringIO()
    quoting: Literal[0, 1, 2, 3] = csv.QUOTE_ALL if quoted else csv.QUOTE_MINIMAL
    writer = csv.writer(
        out, delimiter=delimiter, quoting=quoting, lineterminator="\r\n" if opts.crlf else "\n"
    )
    writer.writerow(header)
    index = 1
    for cells in preamble:
        writer.writerow([str(index), *cells])
        index += 1
    for _, local, cells, _expected in timed:
        writer.writerow([str(index), local.isoformat(timespec="seconds"), *cells])
        index += 1
    expected_records = [item[3] for item in timed]
    if timed:
        expected_records.append(ExpectedRecord("cgmSettings", "", timed[-1][0], None))
    stamp = dt.datetime.fromtimestamp(timeline.end_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d_%H%M%S")
    name = f"Clarity_Export_{last_name(timeline)}_{stamp}.csv"
    return WrittenExport(name, "\ufeff".encode() + out.getvalue().encode("utf-8"), expected_records)


def last_name(timeline: Timeline) -> str:
    """The simulated patient's last name, as vendors put it in file names."""
    return timeline.profile.name.rpartition(" ")[2] or "Patient"
