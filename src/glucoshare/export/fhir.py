"""A patient's CGM data over a period as a FHIR R4 submission bundle of the HL7 CGM guide.

Reference: HL7 FHIR "Continuous Glucose Monitoring" implementation guide, v1.0.0 STU 1, canonical
``http://hl7.org/fhir/uv/cgm``, FHIR R4 4.0.1. The bundle follows ``cgm-data-submission-bundle``:
a ``transaction`` that a data receiver takes at ``POST [base]/$submit-cgm-bundle``. It holds

* the **Patient** (name and birth date; no e-mail address);
* one **Device** (``cgm-device``) per device whose readings are in the bundle;
* the **CGM summary** panel (``cgm-summary``, LOINC 107931-8) and its members: times in ranges
  (106793-3, five components in %), GMI (97506-0, %), CV (104638-2, %), days of wear (104636-6, d),
  sensor active % (104637-4), mean glucose in mg/dL (97507-8) and, for patients who read mmol/L,
  in mmol/L too (105273-7);
* the **PDF report** (DiagnosticReport ``cgm-summary-pdf``) when the caller passes one;
* one **sensor reading** (``cgm-sensor-reading-mass-per-volume``, LOINC 99504-3, mg/dL) per
  regular CGM reading of the period, unless the caller leaves them out.

Every number comes from the stats document (:func:`glucoshare.summaries.service.patient_stats`),
unrounded; the readings are the ones the stats count (regular sensor series, one per sampling
slot, :mod:`glucoshare.analytics.coverage`). Nothing is made up:

* the summary's required members (times in ranges, GMI, CV, days of wear, sensor active %) must
  carry a value (``valueQuantity 1..1``), so when one of them is not computable (no readings, or a
  single one, which has no CV) the panel and its members are left out rather than sent with zeros;
* the PDF report's profile requires the PDF (``presentedForm`` 1..*), so without one there is no
  DiagnosticReport;
* a reading at a sensor limit (annotation ``low``/``high``: the value is the limit) carries the
  comparator ``<=``/``>=``.

Every resource has a deterministic ``identifier`` (system + hash of the patient, the period and the
metric, or of the reading's instant) and the entry a conditional create (``ifNoneExist``), so a
receiver that supports it stores a resubmitted period once. ``fullUrl``s are ``urn:uuid``s derived
from the identifiers, and references between entries go through them. Resources are validated with
the ``fhir.resources.R4B`` models (the nearest to R4 4.0.1 the library has) and the bundle with
:mod:`glucoshare.export.fhir_rules` before it is written.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
from fhir.resources.R4B.bundle import Bundle as FhirBundle
from fhir.resources.R4B.device import Device as FhirDevice
from fhir.resources.R4B.diagnosticreport import DiagnosticReport as FhirDiagnosticReport
from fhir.resources.R4B.observation import Observation as FhirObservation
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.resource import Resource as FhirResource
from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.accounts.models import Patient
from glucoshare.analytics.coverage import one_per_slot, sampling_interval
from glucoshare.devices.models import Device
from glucoshare.errors import InputError, InternalError
from glucoshare.export import fhir_rules as rules
from glucoshare.export.service import export_target
from glucoshare.records.models import Record
from glucoshare.records.vocabulary import MGDL_PER_MMOLL, RecordType
from glucoshare.summaries.data import distinct_readings
from glucoshare.summaries.schemas import StatsOut
from glucoshare.summaries.service import patient_stats
from glucoshare.summaries.stats import Period

PATIENT_SYSTEM = "urn:glucoshare:patient"
DEVICE_SYSTEM = "urn:glucoshare:device"
DEVICE_SERIAL_SYSTEM = "urn:glucoshare:device:serial"
OBSERVATION_SYSTEM = "urn:glucoshare:observation"
REPORT_SYSTEM = "urn:glucoshare:diagnostic-report"
"""Identifier systems of the resources Glucoshare submits (values: hashes, see :func:`identifier`)."""

_FULL_URL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:glucoshare:fhir")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_OFFSET_MIN = 14 * 60  # FHIR's dateTime allows offsets up to ±14:00
_COMPARATORS = {"low": "<=", "high": ">="}
_SERIAL_TYPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SNO"}],
    "text": "Serial number",
}
_LABORATORY = {"coding": [{"system": rules.OBSERVATION_CATEGORY, "code": "laboratory"}]}
_LAB = {"coding": [{"system": rules.DIAGNOSTIC_SERVICE, "code": "LAB"}]}
_TEXTS = {
    rules.SENSOR_READING_MASS.id: "Glucose, CGM sensor reading",
    rules.SUMMARY.id: "CGM summary",
    rules.MEAN_GLUCOSE_MASS.id: "Mean glucose",
    rules.MEAN_GLUCOSE_MOLAR.id: "Mean glucose",
    rules.TIMES_IN_RANGES.id: "CGM times in ranges",
    rules.GMI.id: "Glucose management indicator (GMI)",
    rules.COEFFICIENT_OF_VARIATION.id: "Coefficient of variation of glucose (CV)",
    rules.DAYS_OF_WEAR.id: "CGM days of wear",
    rules.SENSOR_ACTIVE.id: "CGM sensor active time",
}
_MODELS: dict[str, type[FhirResource]] = {
    "Patient": FhirPatient,
    "Device": FhirDevice,
    "Observation": FhirObservation,
    "DiagnosticReport": FhirDiagnosticReport,
}


class NotAPdfError(InputError):
    """The report to attach to a FHIR export is not a PDF."""

    code = "not_a_pdf"


@dataclasses.dataclass(frozen=True, slots=True)
class SensorReading:
    """One regular CGM reading: UTC instant (epoch ms), the source's offset, mg/dL, its device."""

    time_ms: int
    utc_offset_min: int
    mgdl: float
    annotation: str | None
    device_seq: int


@dataclasses.dataclass(frozen=True, slots=True)
class CgmBundle:
    """A submission bundle (plain JSON) and what it holds."""

    document: dict[str, Any]
    period: Period
    readings: int
    """Sensor-reading Observations in the bundle."""
    devices: int
    summary: bool
    """Whether the summary panel and its members are in the bundle (see the module notes)."""
    report: bool
    """Whether the PDF report (DiagnosticReport) is in the bundle."""

    @property
    def entries(self) -> int:
        """Entries of the bundle."""
        return len(self.document["entry"])


def identifier(system: str, *parts: object) -> dict[str, str]:
    """A deterministic identifier: ``system`` and the first 32 hex digits of SHA-256 of ``parts``.

    The parts (JSON-encoded, so they cannot run into each other) name the patient and what the
    resource is about; the same parts always give the same identifier, so a resubmission matches.
    """
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()
    return {"system": system, "value": digest[:32]}


def full_url(ident: dict[str, str]) -> str:
    """The entry's ``fullUrl``: a name-based ``urn:uuid`` (UUID 5) of its identifier."""
    return f"urn:uuid:{uuid.uuid5(_FULL_URL_NAMESPACE, ident['system'] + '|' + ident['value'])}"


def instant(time_ms: int, utc_offset_min: int) -> str:
    """A UTC instant (epoch ms) as a FHIR dateTime in the source's offset, e.g. ``…T10:15:00+02:00``.

    An offset FHIR cannot write (beyond ±14:00) falls back to UTC; the instant stays exact.
    """
    offset = utc_offset_min if abs(utc_offset_min) <= _MAX_OFFSET_MIN else 0
    moment = (_EPOCH + dt.timedelta(milliseconds=time_ms)).astimezone(
        dt.timezone(dt.timedelta(minutes=offset))
    )
    return moment.isoformat(timespec="milliseconds" if time_ms % 1000 else "seconds")


def _quantity(value: float, unit: rules.Unit, comparator: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value}
    if comparator is not None:
        out["comparator"] = comparator
    out.update({"unit": unit.text, "system": rules.UCUM, "code": unit.code})
    return out


def _unit(profile: rules.ObservationProfile) -> rules.Unit:
    if profile.unit is None:
        msg = f"{profile.id} has no value of its own"
        raise ValueError(msg)
    return profile.unit


def _code(profile: rules.ObservationProfile) -> dict[str, Any]:
    return {"coding": [{"system": rules.LOINC, "code": profile.loinc}], "text": _TEXTS[profile.id]}


def _validated(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` after its ``fhir.resources.R4B`` model accepted it (errors without values)."""
    kind = str(resource["resourceType"])
    try:
        _MODELS[kind].model_validate(resource)
    except pydantic.ValidationError as exc:
        where = "; ".join(".".join(map(str, e["loc"])) + f" ({e['type']})" for e in exc.errors()[:3])
        msg = f"FHIR {kind} rejected by the R4B model: {where}"
        raise InternalError(msg) from None
    return resource


def reading_observation(
    reading: SensorReading, *, patient_id: str, subject: str, device: str
) -> dict[str, Any]:
    """One ``cgm-sensor-reading-mass-per-volume`` Observation (LOINC 99504-3, mg/dL), validated.

    ``subject`` and ``device`` are the fullUrls of the Patient and Device entries; the identifier is
    the patient's and the reading's instant. A reading at a sensor limit carries ``<=``/``>=``.
    """
    profile = rules.SENSOR_READING_MASS
    return _validated(
        {
            "resourceType": "Observation",
            "meta": {"profile": [profile.url]},
            "identifier": [identifier(OBSERVATION_SYSTEM, profile.id, patient_id, reading.time_ms)],
            "status": "final",
            "category": [_LABORATORY],
            "code": _code(profile),
            "subject": {"reference": subject},
            "effectiveDateTime": instant(reading.time_ms, reading.utc_offset_min),
            "valueQuantity": _quantity(reading.mgdl, rules.MG_DL, _COMPARATORS.get(reading.annotation or "")),
            "device": {"reference": device},
        }
    )


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    ident = resource["identifier"][0]
    return {
        "fullUrl": full_url(ident),
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
        },
    }


def _patient_resource(patient: Patient) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [identifier(PATIENT_SYSTEM, "patient", patient.id)],
    }
    name = (patient.name or "").strip()
    if name:
        resource["name"] = [{"text": name}]
    if patient.birthdate is not None:
        resource["birthDate"] = patient.birthdate.isoformat()
    return _validated(resource)


def device_name(device: Device) -> str:
    """The ``user-friendly-name`` of a device: manufacturer and model (the model alone if it says both)."""
    manufacturer, model = device.manufacturer.strip(), device.model.strip()
    if not manufacturer or model.lower().startswith(manufacturer.lower()):
        return model or manufacturer
    return f"{manufacturer} {model}".strip()


def _device_resource(device: Device, patient_id: str, subject: str) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = [identifier(DEVICE_SYSTEM, "device", patient_id, device.device_key)]
    if device.serial:
        identifiers.append({"type": _SERIAL_TYPE, "system": DEVICE_SERIAL_SYSTEM, "value": device.serial})
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "meta": {"profile": [rules.profile_url(rules.DEVICE_PROFILE)]},
        "identifier": identifiers,
        "deviceName": [{"name": device_name(device), "type": rules.DEVICE_NAME_TYPE_FRIENDLY}],
    }
    if device.manufacturer.strip():
        resource["manufacturer"] = device.manufacturer.strip()
    if device.model.strip():
        resource["modelNumber"] = device.model.strip()
    if device.serial:
        resource["serialNumber"] = device.serial
    resource["patient"] = {"reference": subject}
    return _validated(resource)


def _summary_values(stats: StatsOut) -> dict[str, Any] | None:
    """The values of the required summary members, or ``None`` when one is not computable."""
    bands = (
        stats.time_very_low_pct,
        stats.time_low_pct,
        stats.time_in_range_pct,
        stats.time_high_pct,
        stats.time_very_high_pct,
    )
    scalars = {
        rules.GMI.id: stats.gmi_pct,
        rules.COEFFICIENT_OF_VARIATION.id: stats.cv_pct,
        rules.DAYS_OF_WEAR.id: stats.days_with_cgm,
        rules.SENSOR_ACTIVE.id: stats.sensor_active_pct,
    }
    if any(v is None for v in bands) or any(v is None for v in scalars.values()):
        return None
    return {rules.TIMES_IN_RANGES.id: bands, **scalars}


class _Assembly:
    """The entries of one bundle, built in order: patient, devices, report, summary, readings."""

    def __init__(self, patient: Patient, period: Period) -> None:
        self.patient_id = patient.id
        self.period = period
        self.entries: list[dict[str, Any]] = []
        self.subject = self.add(_patient_resource(patient))

    def add(self, resource: dict[str, Any]) -> str:
        entry = _entry(resource)
        self.entries.append(entry)
        return str(entry["fullUrl"])

    def effective_period(self) -> dict[str, str]:
        return {"start": self.period.first.isoformat(), "end": self.period.last.isoformat()}

    def summary_observation(
        self, profile: rules.ObservationProfile, content: dict[str, Any]
    ) -> dict[str, Any]:
        """A summary Observation of ``profile`` over the period (``content``: its value or members)."""
        period = (self.period.first.isoformat(), self.period.last.isoformat())
        return _validated(
            {
                "resourceType": "Observation",
                "meta": {"profile": [profile.url]},
                "identifier": [identifier(OBSERVATION_SYSTEM, profile.id, self.patient_id, *period)],
                "status": "final",
                "category": [_LABORATORY],
                "code": _code(profile),
                "subject": {"reference": self.subject},
                "effectivePeriod": self.effective_period(),
                **content,
            }
        )

    def members(self, stats: StatsOut, display_units: str) -> list[dict[str, Any]] | None:
        values = _summary_values(stats)
        if values is None or stats.mean_mgdl is None:
            return None
        components = [
            {
                "code": {"coding": [{"system": rules.LOINC, "code": code}], "text": label},
                "valueQuantity": _quantity(value, rules.PERCENT),
            }
            for (code, label), value in zip(
                rules.TIME_IN_RANGE_COMPONENTS, values[rules.TIMES_IN_RANGES.id], strict=True
            )
        ]
        out = [
            self.summary_observation(rules.TIMES_IN_RANGES, {"component": components}),
            *(
                self.summary_observation(
                    profile, {"valueQuantity": _quantity(values[profile.id], _unit(profile))}
                )
                for profile in (
                    rules.GMI,
                    rules.COEFFICIENT_OF_VARIATION,
                    rules.DAYS_OF_WEAR,
                    rules.SENSOR_ACTIVE,
                )
            ),
            self.summary_observation(
                rules.MEAN_GLUCOSE_MASS, {"valueQuantity": _quantity(stats.mean_mgdl, rules.MG_DL)}
            ),
        ]
        if display_units == "mmol/L":
            out.append(
                self.summary_observation(
                    rules.MEAN_GLUCOSE_MOLAR,
                    {"valueQuantity": _quantity(stats.mean_mgdl / MGDL_PER_MMOLL, rules.MMOL_L)},
                )
            )
        return out

    def report(self, pdf: bytes, summary_url: str | None, issued: str) -> dict[str, Any]:
        period = (self.period.first.isoformat(), self.period.last.isoformat())
        resource: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "meta": {"profile": [rules.profile_url(rules.SUMMARY_PDF_PROFILE)]},
            "identifier": [identifier(REPORT_SYSTEM, rules.SUMMARY_PDF_PROFILE, self.patient_id, *period)],
            "status": "final",
            "category": [_LAB],
            "code": {
                "coding": [{"system": rules.LOINC, "code": rules.SUMMARY.loinc}],
                "text": "CGM summary report",
            },
            "subject": {"reference": self.subject},
            "effectivePeriod": self.effective_period(),
            "issued": issued,
        }
        if summary_url is not None:
            resource["result"] = [{"reference": summary_url}]
        resource["presentedForm"] = [
            {
                "contentType": rules.PDF_CONTENT_TYPE,
                "data": base64.b64encode(pdf).decode("ascii"),
                "title": f"CGM summary {period[0]} to {period[1]}",
            }
        ]
        return _validated(resource)


def load_readings(session: Session, patient_id: str, period: Period) -> list[SensorReading]:
    """The regular CGM readings of the period the stats count, in time order.

    The ``cbg`` ``sensor`` records with a value in ``[start_ms, end_ms)`` (as
    :func:`glucoshare.summaries.data.load_cgm` selects them), one per sampling slot.
    """
    devices = select(Device.seq).where(Device.patient_id == patient_id).scalar_subquery()
    rows = session.execute(
        select(Record.time_ms, Record.utc_offset_min, Record.value, Record.annotation, Record.device_seq)
        .where(
            Record.device_seq.in_(devices),
            Record.type == RecordType.CBG.value,
            Record.subtype == "sensor",
            Record.time_ms >= period.start_ms,
            Record.time_ms < period.end_ms,
            Record.value.is_not(None),
        )
        .order_by(Record.time_ms, Record.id)
    ).all()
    if not rows:
        return []
    times = np.array([row[0] for row in rows], np.int64)
    distinct = distinct_readings(
        session,
        patient_id,
        times,
        np.array([row[2] for row in rows], np.float64),
        np.array([row[4] for row in rows], np.int64),
    )
    if not distinct.all():
        rows = [row for row, counted in zip(rows, distinct.tolist(), strict=True) if counted]
        times = times[distinct]
    keep = one_per_slot(times, sampling_interval(times)).tolist()
    return [
        SensorReading(int(row[0]), int(row[1]), float(row[2]), row[3], int(row[4]))
        for row in (rows[at] for at in keep)
    ]


def build_cgm_bundle(
    session: Session,
    *,
    patient: Patient,
    period: Period,
    actor: str,
    pdf: bytes | None = None,
    readings: bool = True,
    now: dt.datetime | None = None,
) -> CgmBundle:
    """The patient's CGM submission bundle over ``period`` (IG ``cgm-data-submission-bundle``).

    The summary numbers are the stats document's (the read is audited as ``actor``'s); ``pdf`` is the
    summary report to attach (a ``cgm-summary-pdf`` DiagnosticReport only with it); ``readings=False``
    leaves the sensor readings out (their devices stay); ``now`` is the bundle's ``timestamp``
    (default: the current time). Raises :class:`NotAPdfError` when ``pdf`` is not a PDF.
    """
    if pdf is not None and not pdf.startswith(b"%PDF-"):
        msg = "the report to attach is not a PDF file"
        raise NotAPdfError(msg)
    stamp = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(timespec="seconds")
    stamp = stamp.replace("+00:00", "Z")
    stats = patient_stats(session, patient, period, actor=actor)
    found = load_readings(session, patient.id, period)
    seqs = sorted({r.device_seq for r in found})
    devices = list(
        session.scalars(select(Device).where(Device.seq.in_(seqs)).order_by(Device.created_at, Device.seq))
    )
    assembly = _Assembly(patient, period)
    device_urls = {d.seq: assembly.add(_device_resource(d, patient.id, assembly.subject)) for d in devices}
    members = assembly.members(stats, patient.display_units)
    panel: dict[str, Any] | None = None
    if members is not None:
        panel = assembly.summary_observation(
            rules.SUMMARY, {"hasMember": [{"reference": full_url(m["identifier"][0])} for m in members]}
        )
    summary_url = full_url(panel["identifier"][0]) if panel is not None else None
    if pdf is not None:
        assembly.add(assembly.report(pdf, summary_url, stamp))
    if panel is not None and members is not None:
        assembly.add(panel)
        for member in members:
            assembly.add(member)
    if readings:
        for reading in found:
            assembly.add(
                reading_observation(
                    reading,
                    patient_id=patient.id,
                    subject=assembly.subject,
                    device=device_urls[reading.device_seq],
                )
            )
    document: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"profile": [rules.profile_url(rules.BUNDLE_PROFILE)]},
        "type": "transaction",
        "timestamp": stamp,
        "entry": assembly.entries,
    }
    _validate_envelope(document)
    return CgmBundle(
        document=document,
        period=period,
        readings=len(found) if readings else 0,
        devices=len(devices),
        summary=panel is not None,
        report=pdf is not None,
    )


def _validate_envelope(document: dict[str, Any]) -> None:
    """The Bundle (entries without their resources, which are validated one by one) by its R4B model."""
    envelope = {
        **document,
        "entry": [{k: v for k, v in e.items() if k != "resource"} for e in document["entry"]],
    }
    try:
        FhirBundle.model_validate(envelope)
    except pydantic.ValidationError as exc:
        where = "; ".join(".".join(map(str, e["loc"])) + f" ({e['type']})" for e in exc.errors()[:3])
        msg = f"FHIR Bundle rejected by the R4B model: {where}"
        raise InternalError(msg) from None


def write_cgm_bundle(bundle: CgmBundle, out: Path) -> None:
    """Write the bundle as JSON to ``out`` atomically with mode 0600, once it conforms.

    The bundle is checked against the IG's rules (:func:`glucoshare.export.fhir_rules.check_bundle`)
    first; a bundle that breaks one is a bug and is not written (:class:`InternalError`).
    """
    problems = rules.check_bundle(bundle.document)
    if problems:
        msg = (
            f"the FHIR bundle breaks {len(problems)} rule(s) of the CGM implementation guide "
            f"(first: {problems[0]}); nothing was written"
        )
        raise InternalError(msg)
    with export_target(out) as handle:
        json.dump(bundle.document, handle, ensure_ascii=False, indent=1)
        handle.write("\n")


def export_fhir(
    session: Session,
    *,
    patient: Patient,
    period: Period,
    out: Path,
    actor: str,
    pdf: bytes | None = None,
    readings: bool = True,
) -> CgmBundle:
    """Build the patient's CGM submission bundle over ``period`` and write it to ``out``.

    :func:`build_cgm_bundle` then :func:`write_cgm_bundle`; returns what was written. The caller
    audits the export.
    """
    bundle = build_cgm_bundle(
        session, patient=patient, period=period, actor=actor, pdf=pdf, readings=readings
    )
    write_cgm_bundle(bundle, out)
    return bundle
