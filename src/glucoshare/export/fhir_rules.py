"""The rules of the HL7 CGM implementation guide that ``fhir.resources`` does not check.

Reference: HL7 FHIR "Continuous Glucose Monitoring" implementation guide, v1.0.0 STU 1, canonical
``http://hl7.org/fhir/uv/cgm``, on FHIR R4 4.0.1 (``input/fsh/profiles.fsh`` of HL7/cgm). The
``fhir.resources`` models check the structure and cardinality of the base resources; they check no
profile: not the fixed LOINC codes, the UCUM units, the slices or the invariant. This module does,
on the plain JSON of a submission bundle (``cgm-data-submission-bundle``):

* the bundle: ``type`` transaction, ``timestamp`` an instant with its offset, at least one entry,
  at most one Patient, only the resource types a receiver accepts (Patient, Device, Observation,
  DiagnosticReport, ServiceRequest);
* every entry: a unique ``fullUrl``, an ``identifier`` with system and value, and a ``request``
  ``POST <ResourceType>`` whose ``ifNoneExist`` is ``identifier=<system>|<value>`` of one of those
  identifiers (deduplication by conditional create, the IG's "Handling Duplicate Submissions");
* every reference resolves to the ``fullUrl`` of an entry, and ``subject``, ``device``,
  ``hasMember`` and ``result`` to one of the right resource type;
* Observations, recognised by their LOINC code as the bundle's slicing does: the profile declared in
  ``meta.profile`` matches the code; ``status`` is a code of the value set; ``subject`` is present;
  the value is a UCUM quantity with the profile's code and unit text; ``dataAbsentReason`` only
  without a value; ``value or dataAbsentReason`` on sensor readings (invariant
  ``cgm-sensor-value-or-dar``); a value on the percentage and days-of-wear profiles (``1..1``);
  ``effectiveDateTime`` on readings (stricter than the IG: to the second, with an offset);
  ``effectivePeriod.start``/``end`` as dates ``YYYY-MM-DD`` on summaries; the five time-in-range
  components exactly once each; the summary panel's ``hasMember`` at least six, each required
  member exactly once and each mean at most once;
* the DiagnosticReport ``cgm-summary-pdf``: LOINC 107931-8, ``subject``, dates, at least one
  ``presentedForm`` of ``application/pdf`` with base64 ``data``, ``result`` → summary panels;
* the Device ``cgm-device``: one ``deviceName`` of type ``user-friendly-name`` with a name, at
  least one identifier.

Problems name the entry and the rule, never a value of the patient's (no glucose, date or name), so
they can be shown and logged.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

IG = "http://hl7.org/fhir/uv/cgm"
"""Canonical URL of the CGM implementation guide."""
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
DEVICE_NAME_TYPE_FRIENDLY = "user-friendly-name"
PDF_CONTENT_TYPE = "application/pdf"

BUNDLE_PROFILE = "cgm-data-submission-bundle"
SUMMARY_PDF_PROFILE = "cgm-summary-pdf"
DEVICE_PROFILE = "cgm-device"

ACCEPTED_TYPES = frozenset({"Patient", "Device", "Observation", "DiagnosticReport", "ServiceRequest"})
"""Resource types a CGM data receiver accepts in a submission (IG, "Data Receiver" requirements)."""

OBSERVATION_STATUSES = frozenset(
    {"registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"}
)
REPORT_STATUSES = OBSERVATION_STATUSES | {"partial"}
COMPARATORS = frozenset({"<", "<=", ">=", ">"})


def profile_url(profile_id: str) -> str:
    """The canonical URL of one of the IG's profiles."""
    return f"{IG}/StructureDefinition/{profile_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class Unit:
    """A UCUM unit as the IG fixes it: ``code`` and the ``unit`` text of the pattern."""

    code: str
    text: str


MG_DL = Unit("mg/dL", "mg/dl")
MMOL_L = Unit("mmol/L", "mmol/l")
PERCENT = Unit("%", "%")
DAYS = Unit("d", "days")


@dataclasses.dataclass(frozen=True, slots=True)
class ObservationProfile:
    """One Observation profile of the IG: its fixed LOINC code and the shape of its value."""

    id: str
    loinc: str
    unit: Unit | None
    """The fixed unit of ``valueQuantity``; ``None`` when the profile has no value (panels)."""
    value_required: bool
    """``valueQuantity 1..1`` (the percentage and days-of-wear profiles)."""
    summary: bool
    """A summary over a reporting period (``effectivePeriod`` with dates) rather than a reading."""

    @property
    def url(self) -> str:
        """The profile's canonical URL."""
        return profile_url(self.id)


SENSOR_READING_MASS = ObservationProfile(
    "cgm-sensor-reading-mass-per-volume", "99504-3", MG_DL, value_required=False, summary=False
)
SENSOR_READING_MOLAR = ObservationProfile(
    "cgm-sensor-reading-moles-per-volume", "105272-9", MMOL_L, value_required=False, summary=False
)
SUMMARY = ObservationProfile("cgm-summary", "107931-8", None, value_required=False, summary=True)
MEAN_GLUCOSE_MASS = ObservationProfile(
    "cgm-summary-mean-glucose-mass-per-volume", "97507-8", MG_DL, value_required=False, summary=True
)
MEAN_GLUCOSE_MOLAR = ObservationProfile(
    "cgm-summary-mean-glucose-moles-per-volume", "105273-7", MMOL_L, value_required=False, summary=True
)
TIMES_IN_RANGES = ObservationProfile(
    "cgm-summary-times-in-ranges", "106793-3", None, value_required=False, summary=True
)
GMI = ObservationProfile("cgm-summary-gmi", "97506-0", PERCENT, value_required=True, summary=True)
COEFFICIENT_OF_VARIATION = ObservationProfile(
    "cgm-summary-coefficient-of-variation", "104638-2", PERCENT, value_required=True, summary=True
)
DAYS_OF_WEAR = ObservationProfile(
    "cgm-summary-days-of-wear", "104636-6", DAYS, value_required=True, summary=True
)
SENSOR_ACTIVE = ObservationProfile(
    "cgm-summary-sensor-active-percentage", "104637-4", PERCENT, value_required=True, summary=True
)

OBSERVATION_PROFILES: dict[str, ObservationProfile] = {
    p.id: p
    for p in (
        SENSOR_READING_MASS,
        SENSOR_READING_MOLAR,
        SUMMARY,
        MEAN_GLUCOSE_MASS,
        MEAN_GLUCOSE_MOLAR,
        TIMES_IN_RANGES,
        GMI,
        COEFFICIENT_OF_VARIATION,
        DAYS_OF_WEAR,
        SENSOR_ACTIVE,
    )
}
_BY_LOINC = {p.loinc: p for p in OBSERVATION_PROFILES.values()}

TIME_IN_RANGE_COMPONENTS: tuple[tuple[str, str], ...] = (
    ("104642-4", "time very low (<54 mg/dL)"),
    ("104641-6", "time low (54–69 mg/dL)"),
    ("97510-2", "time in range (70–180 mg/dL)"),
    ("104640-8", "time high (181–250 mg/dL)"),
    ("104639-0", "time very high (>250 mg/dL)"),
)
"""The five components of ``cgm-summary-times-in-ranges`` (LOINC, what it is), very low first."""

SUMMARY_MEMBERS: dict[str, tuple[int, int]] = {
    TIMES_IN_RANGES.id: (1, 1),
    GMI.id: (1, 1),
    COEFFICIENT_OF_VARIATION.id: (1, 1),
    DAYS_OF_WEAR.id: (1, 1),
    SENSOR_ACTIVE.id: (1, 1),
    MEAN_GLUCOSE_MASS.id: (0, 1),
    MEAN_GLUCOSE_MOLAR.id: (0, 1),
}
"""How many ``hasMember`` of each profile the summary panel holds (min, max)."""
MIN_SUMMARY_MEMBERS = 6

_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
_DATE_TIME = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{1,9})?"
    r"(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))"
)


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_date_time(value: object) -> bool:
    """An instant as FHIR writes one: date, time to the second and an offset."""
    return isinstance(value, str) and _DATE_TIME.fullmatch(value) is not None


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _dict(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _codes(concept: object, system: str) -> list[str]:
    """The codes of ``system`` in a CodeableConcept."""
    return [
        str(coding.get("code"))
        for coding in map(_dict, _list(_dict(concept).get("coding")))
        if coding.get("system") == system
    ]


class _Checker:
    """Collects the problems of one bundle."""

    def __init__(self, bundle: Mapping[str, Any]) -> None:
        self.bundle = bundle
        self.problems: list[str] = []
        self.entries = [_dict(e) for e in _list(bundle.get("entry"))]
        self.by_url: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            url = entry.get("fullUrl")
            if isinstance(url, str) and url not in self.by_url:
                self.by_url[url] = _dict(entry.get("resource"))

    def report(self, where: str, problem: str) -> None:
        self.problems.append(f"{where}: {problem}")

    def run(self) -> list[str]:
        self.check_envelope()
        seen: set[str] = set()
        for at, entry in enumerate(self.entries):
            resource = _dict(entry.get("resource"))
            kind = resource.get("resourceType")
            where = f"entry[{at}] {kind or 'resource'}"
            url = entry.get("fullUrl")
            if not isinstance(url, str) or not url:
                self.report(where, "fullUrl is missing")
            elif url in seen:
                self.report(where, "fullUrl is used by another entry")
            else:
                seen.add(url)
            if kind not in ACCEPTED_TYPES:
                self.report(where, "resource type is not one a CGM data receiver accepts")
                continue
            self.check_request(where, entry, resource)
            self.check_references(where, resource)
            if kind == "Observation":
                self.check_observation(where, resource)
            elif kind == "DiagnosticReport":
                self.check_report(where, resource)
            elif kind == "Device":
                self.check_device(where, resource)
        return self.problems

    def check_envelope(self) -> None:
        if self.bundle.get("resourceType") != "Bundle":
            self.report("bundle", "resourceType must be Bundle")
        if self.bundle.get("type") != "transaction":
            self.report("bundle", "type must be transaction")
        if not _is_date_time(self.bundle.get("timestamp")):
            self.report("bundle", "timestamp must be an instant with its UTC offset")
        if not self.entries:
            self.report("bundle", "needs at least one entry")
        patients = sum(1 for e in self.entries if _dict(e.get("resource")).get("resourceType") == "Patient")
        if patients > 1:
            self.report("bundle", f"holds at most one Patient entry, found {patients}")

    def check_request(self, where: str, entry: Mapping[str, Any], resource: Mapping[str, Any]) -> None:
        identifiers = [
            f"{i.get('system')}|{i.get('value')}"
            for i in map(_dict, _list(resource.get("identifier")))
            if i.get("system") and i.get("value")
        ]
        if not identifiers:
            self.report(where, "needs an identifier with system and value")
        request = _dict(entry.get("request"))
        if request.get("method") != "POST":
            self.report(where, "request.method must be POST")
        if request.get("url") != resource.get("resourceType"):
            self.report(where, "request.url must be the resource type")
        condition = request.get("ifNoneExist")
        if not isinstance(condition, str) or not condition.startswith("identifier="):
            self.report(where, "request.ifNoneExist must be identifier=<system>|<value>")
        elif condition.removeprefix("identifier=") not in identifiers:
            self.report(where, "request.ifNoneExist names none of the resource's identifiers")

    def check_references(self, where: str, node: object, path: str = "") -> None:
        """Every ``reference`` inside a resource resolves to the ``fullUrl`` of an entry."""
        if isinstance(node, Mapping):
            target = node.get("reference")
            if isinstance(target, str) and target not in self.by_url:
                self.report(where, f"{path or 'reference'} does not resolve to an entry of the bundle")
            for key, value in node.items():
                if key != "reference":
                    self.check_references(where, value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for at, value in enumerate(node):
                self.check_references(where, value, f"{path}[{at}]")

    def resolve(self, where: str, reference: object, kind: str, element: str) -> dict[str, Any] | None:
        """The resource a reference points at, reporting one that is missing or of another type."""
        target = _dict(reference).get("reference")
        if not isinstance(target, str) or not target:
            self.report(where, f"{element} needs a reference")
            return None
        resource = self.by_url.get(target)
        if resource is None:  # reported once by check_references
            return None
        if resource.get("resourceType") != kind:
            self.report(where, f"{element} must point at a {kind}")
            return None
        return resource

    def check_subject(self, where: str, resource: Mapping[str, Any]) -> None:
        if "subject" not in resource:
            self.report(where, "subject is required")
        else:
            self.resolve(where, resource["subject"], "Patient", "subject")

    def check_period(self, where: str, resource: Mapping[str, Any]) -> None:
        period = _dict(resource.get("effectivePeriod"))
        start, end = period.get("start"), period.get("end")
        for name, value in (("start", start), ("end", end)):
            if not _is_date(value):
                self.report(where, f"effectivePeriod.{name} must be a date YYYY-MM-DD")
        if _is_date(start) and _is_date(end) and str(end) < str(start):
            self.report(where, "effectivePeriod ends before it starts")

    def check_quantity(self, where: str, quantity: Mapping[str, Any], unit: Unit, element: str) -> None:
        value = quantity.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.report(where, f"{element}.value must be a number")
        if quantity.get("system") != UCUM:
            self.report(where, f"{element}.system must be UCUM ({UCUM})")
        if quantity.get("code") != unit.code:
            self.report(where, f"{element}.code must be UCUM {unit.code!r}")
        if quantity.get("unit") != unit.text:
            self.report(where, f"{element}.unit must be {unit.text!r}")
        comparator = quantity.get("comparator")
        if comparator is not None and comparator not in COMPARATORS:
            self.report(where, f"{element}.comparator is not one of < <= >= >")

    def profile_of(self, where: str, resource: Mapping[str, Any]) -> ObservationProfile | None:
        """The IG profile of an Observation, from its LOINC code (the bundle's slicing)."""
        declared = [
            url.removeprefix(f"{IG}/StructureDefinition/")
            for url in _list(_dict(resource.get("meta")).get("profile"))
            if isinstance(url, str) and url.startswith(f"{IG}/StructureDefinition/")
        ]
        by_code = [_BY_LOINC[code] for code in _codes(resource.get("code"), LOINC) if code in _BY_LOINC]
        for profile_id in declared:
            profile = OBSERVATION_PROFILES.get(profile_id)
            if profile is None:
                self.report(where, f"meta.profile {profile_id!r} is not an Observation profile of the IG")
            elif profile not in by_code:
                self.report(where, f"code must hold LOINC {profile.loinc} ({profile.id})")
        if len(by_code) > 1:
            self.report(where, "code holds the LOINC codes of more than one CGM profile")
        if by_code:
            return by_code[0]
        return OBSERVATION_PROFILES.get(declared[0]) if declared else None

    def check_observation(self, where: str, resource: Mapping[str, Any]) -> None:
        profile = self.profile_of(where, resource)
        if resource.get("status") not in OBSERVATION_STATUSES:
            self.report(where, "status must be a code of ObservationStatus")
        if profile is None:
            return
        where = f"{where} ({profile.id})"
        self.check_subject(where, resource)
        if "device" in resource:
            self.resolve(where, resource["device"], "Device", "device")
        has_value = any(key.startswith("value") for key in resource)
        absent = "dataAbsentReason" in resource
        if has_value and absent:
            self.report(where, "dataAbsentReason is only allowed without a value (obs-6)")
        if profile.unit is not None:
            if has_value and "valueQuantity" not in resource:
                self.report(where, "value must be a valueQuantity")
            elif has_value:
                self.check_quantity(where, _dict(resource["valueQuantity"]), profile.unit, "valueQuantity")
            elif profile.value_required:
                self.report(where, "valueQuantity is required (1..1)")
            elif not profile.summary and not absent:
                self.report(where, "needs a value or a dataAbsentReason (cgm-sensor-value-or-dar)")
        elif has_value:
            self.report(where, "a panel has no value of its own")
        if profile.summary:
            self.check_period(where, resource)
        elif not _is_date_time(resource.get("effectiveDateTime")):
            self.report(where, "effectiveDateTime must be the instant of the reading with its offset")
        if profile is TIMES_IN_RANGES:
            self.check_time_in_ranges(where, resource)
        elif profile is SUMMARY:
            self.check_members(where, resource)

    def check_time_in_ranges(self, where: str, resource: Mapping[str, Any]) -> None:
        components = [_dict(c) for c in _list(resource.get("component"))]
        for code, label in TIME_IN_RANGE_COMPONENTS:
            matching = [c for c in components if code in _codes(c.get("code"), LOINC)]
            if len(matching) != 1:
                self.report(where, f"needs exactly one component {code} ({label}), found {len(matching)}")
                continue
            component = matching[0]
            if "valueQuantity" not in component:
                self.report(where, f"component {code} needs a valueQuantity (1..1)")
            else:
                self.check_quantity(where, _dict(component["valueQuantity"]), PERCENT, f"component {code}")

    def check_members(self, where: str, resource: Mapping[str, Any]) -> None:
        members = _list(resource.get("hasMember"))
        if len(members) < MIN_SUMMARY_MEMBERS:
            self.report(
                where, f"hasMember needs at least {MIN_SUMMARY_MEMBERS} members, found {len(members)}"
            )
        counts = dict.fromkeys(SUMMARY_MEMBERS, 0)
        for member in members:
            target = self.resolve(where, member, "Observation", "hasMember")
            if target is None:
                continue
            codes = _codes(target.get("code"), LOINC)
            found = next((p for p in OBSERVATION_PROFILES.values() if p.loinc in codes), None)
            if found is not None and found.id in counts:
                counts[found.id] += 1
        for profile_id, (low, high) in SUMMARY_MEMBERS.items():
            if not low <= counts[profile_id] <= high:
                wanted = "exactly one" if low == high else f"at most {high}"
                self.report(where, f"hasMember needs {wanted} {profile_id}, found {counts[profile_id]}")

    def check_report(self, where: str, resource: Mapping[str, Any]) -> None:
        where = f"{where} ({SUMMARY_PDF_PROFILE})"
        if SUMMARY.loinc not in _codes(resource.get("code"), LOINC):
            self.report(where, f"code must hold LOINC {SUMMARY.loinc}")
        if resource.get("status") not in REPORT_STATUSES:
            self.report(where, "status must be a code of DiagnosticReportStatus")
        self.check_subject(where, resource)
        self.check_period(where, resource)
        forms = [
            f
            for f in map(_dict, _list(resource.get("presentedForm")))
            if f.get("contentType") == PDF_CONTENT_TYPE
        ]
        if not forms:
            self.report(where, f"needs a presentedForm of {PDF_CONTENT_TYPE} (1..*)")
        for form in forms:
            data = form.get("data")
            try:
                decoded = base64.b64decode(str(data), validate=True) if isinstance(data, str) else b""
            except (binascii.Error, ValueError):
                decoded = b""
            if not decoded:
                self.report(where, "presentedForm needs base64 data (1..1)")
        for result in _list(resource.get("result")):
            target = self.resolve(where, result, "Observation", "result")
            if target is not None and SUMMARY.loinc not in _codes(target.get("code"), LOINC):
                self.report(where, f"result must point at a {SUMMARY.id} Observation")

    def check_device(self, where: str, resource: Mapping[str, Any]) -> None:
        where = f"{where} ({DEVICE_PROFILE})"
        names = [
            n
            for n in map(_dict, _list(resource.get("deviceName")))
            if n.get("type") == DEVICE_NAME_TYPE_FRIENDLY
        ]
        if len(names) != 1:
            self.report(where, f"needs exactly one deviceName of type {DEVICE_NAME_TYPE_FRIENDLY}")
        elif not str(names[0].get("name") or "").strip():
            self.report(where, "deviceName needs a name (manufacturer and model)")
        if "patient" in resource:
            self.resolve(where, resource["patient"], "Patient", "patient")


def check_bundle(bundle: Mapping[str, Any]) -> list[str]:
    """Problems of a CGM data submission bundle against the IG's rules; empty when it conforms.

    ``bundle`` is the plain JSON (as parsed) of a ``cgm-data-submission-bundle``; each problem is
    one line naming the entry, the profile and the rule (see the module notes for the list).
    """
    return _Checker(bundle).run()
