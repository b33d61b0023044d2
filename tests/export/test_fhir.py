"""FHIR R4 export per the HL7 CGM implementation guide, on both databases.

The expected codes, units and profile URLs below are typed in from the IG (HL7/cgm
``input/fsh/profiles.fsh``), not imported from the code under test, so a wrong constant there fails
here. The numbers are compared with the stats document of the same period.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from glucoshare.accounts.models import Patient
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.audit.models import AuditEvent
from glucoshare.config import Settings
from glucoshare.errors import InternalError
from glucoshare.export.fhir import (
    CgmBundle,
    NotAPdfError,
    SensorReading,
    build_cgm_bundle,
    instant,
    reading_observation,
    write_cgm_bundle,
)
from glucoshare.export.fhir_rules import check_bundle
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.dexcom_clarity import ClarityOptions, write_clarity
from glucoshare.summaries.data import load_cgm
from glucoshare.summaries.service import patient_stats, resolve_period
from glucoshare.summaries.stats import Period
from tests.ingest.helpers import profile, store_export

CGM = "http://hl7.org/fhir/uv/cgm/StructureDefinition/"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ZONE = "Europe/Berlin"
# profile id: (LOINC code, UCUM code, unit text) as the IG fixes them
MEMBERS = {
    "cgm-summary-times-in-ranges": ("106793-3", None, None),
    "cgm-summary-gmi": ("97506-0", "%", "%"),
    "cgm-summary-coefficient-of-variation": ("104638-2", "%", "%"),
    "cgm-summary-days-of-wear": ("104636-6", "d", "days"),
    "cgm-summary-sensor-active-percentage": ("104637-4", "%", "%"),
    "cgm-summary-mean-glucose-mass-per-volume": ("97507-8", "mg/dL", "mg/dl"),
    "cgm-summary-mean-glucose-moles-per-volume": ("105273-7", "mmol/L", "mmol/l"),
}
TIR = ["104642-4", "104641-6", "97510-2", "104640-8", "104639-0"]  # very low … very high
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
runner = CliRunner()


@pytest.fixture(scope="module")
def clarity() -> WrittenExport:
    return write_clarity(simulate(profile(seed=21, control=0.4), start=dt.date(2025, 3, 20), days=20))


@pytest.fixture(scope="module")
def clarity_mmol() -> WrittenExport:
    timeline = simulate(profile(seed=22, units="mmol/L"), start=dt.date(2025, 3, 20), days=15)
    return write_clarity(timeline, ClarityOptions(units="mmol/L"))


@pytest.fixture(scope="module")
def short() -> WrittenExport:
    return write_clarity(simulate(profile(seed=23), start=dt.date(2025, 3, 1), days=2))


def _patient(session: Session, email: str = "fhir@example.org", units: str = "mg/dL") -> Patient:
    return add_patient(
        session,
        validate_patient(
            email=email, name="Fhir Person", timezone=ZONE, birthdate="1990-05-17", display_units=units
        ),
    )


def _import(session: Session, settings: Settings, patient: Patient, export: WrittenExport) -> None:
    store_export(session, settings, patient, export)


def _build(session: Session, patient: Patient, period: Period | None = None, **options: Any) -> CgmBundle:
    return build_cgm_bundle(
        session, patient=patient, period=period or resolve_period(session, patient), actor="test", **options
    )


def _resources(document: dict[str, Any], kind: str | None = None) -> list[dict[str, Any]]:
    return [e["resource"] for e in document["entry"] if kind is None or e["resource"]["resourceType"] == kind]


def _by_profile(document: dict[str, Any], profile_id: str) -> list[dict[str, Any]]:
    return [r for r in _resources(document) if CGM + profile_id in r.get("meta", {}).get("profile", [])]


def _one(document: dict[str, Any], profile_id: str) -> dict[str, Any]:
    found = _by_profile(document, profile_id)
    assert len(found) == 1, profile_id
    return found[0]


@pytest.fixture
def imported(session: Session, settings: Settings, clarity: WrittenExport) -> Patient:
    patient = _patient(session)
    _import(session, settings, patient, clarity)
    return patient


@pytest.fixture
def small(session: Session, settings: Settings, short: WrittenExport) -> dict[str, Any]:
    patient = _patient(session, "small@example.org")
    _import(session, settings, patient, short)
    document = _build(session, patient, pdf=PDF).document
    assert check_bundle(document) == []
    return document


def test_bundle_validates_with_the_r4b_models_and_conforms(session: Session, imported: Patient) -> None:
    bundle = _build(session, imported)
    document = json.loads(json.dumps(bundle.document))  # exactly what is written
    assert check_bundle(document) == []
    assert get_fhir_model_class("Bundle").model_validate(document).type == "transaction"
    for entry in document["entry"]:
        resource = entry["resource"]
        model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert model.model_dump(mode="json", exclude_none=True) == resource
    assert document["meta"]["profile"] == [CGM + "cgm-data-submission-bundle"]
    assert dt.datetime.fromisoformat(document["timestamp"]).tzinfo is not None
    kinds = [e["resource"]["resourceType"] for e in document["entry"]]
    assert kinds.count("Patient") == 1
    assert "DiagnosticReport" not in kinds  # the profile requires the PDF, and none was given
    patient = _resources(document, "Patient")[0]
    assert patient["name"] == [{"text": "Fhir Person"}]
    assert patient["birthDate"] == "1990-05-17"
    assert "telecom" not in patient


def test_every_observation_has_the_igs_codes_units_and_period(session: Session, imported: Patient) -> None:
    bundle = _build(session, imported)
    document = bundle.document
    patient_url = next(e["fullUrl"] for e in document["entry"] if e["resource"]["resourceType"] == "Patient")
    first, last = bundle.period.first.isoformat(), bundle.period.last.isoformat()
    panel = _one(document, "cgm-summary")
    assert panel["code"]["coding"] == [{"system": LOINC, "code": "107931-8"}]
    assert "valueQuantity" not in panel
    urls = {e["fullUrl"]: e["resource"] for e in document["entry"]}
    members = [urls[m["reference"]] for m in panel["hasMember"]]
    assert len(members) == 6  # mg/dL patient: no molar mean
    for profile_id, (loinc, code, unit) in MEMBERS.items():
        found = [m for m in members if m["meta"]["profile"] == [CGM + profile_id]]
        if profile_id.endswith("moles-per-volume"):
            assert found == []
            continue
        (member,) = found
        assert member["code"]["coding"] == [{"system": LOINC, "code": loinc}]
        if code is not None:
            assert {k: member["valueQuantity"][k] for k in ("system", "code", "unit")} == {
                "system": UCUM,
                "code": code,
                "unit": unit,
            }
    for observation in _resources(document, "Observation"):
        assert observation["status"] == "final"
        assert observation["subject"] == {"reference": patient_url}
        if observation["code"]["coding"][0]["code"] != "99504-3":
            assert observation["effectivePeriod"] == {"start": first, "end": last}
    tir = _one(document, "cgm-summary-times-in-ranges")
    assert [c["code"]["coding"][0]["code"] for c in tir["component"]] == TIR
    assert {c["valueQuantity"]["code"] for c in tir["component"]} == {"%"}


def test_numbers_are_the_stats_documents(session: Session, imported: Patient) -> None:
    period = resolve_period(session, imported)
    stats = patient_stats(session, imported, period, actor="test")
    document = _build(session, imported, period).document
    tir = _one(document, "cgm-summary-times-in-ranges")
    assert [c["valueQuantity"]["value"] for c in tir["component"]] == [
        stats.time_very_low_pct,
        stats.time_low_pct,
        stats.time_in_range_pct,
        stats.time_high_pct,
        stats.time_very_high_pct,
    ]

    def value(profile_id: str) -> object:
        return _one(document, profile_id)["valueQuantity"]["value"]

    assert value("cgm-summary-gmi") == stats.gmi_pct
    assert value("cgm-summary-coefficient-of-variation") == stats.cv_pct
    assert value("cgm-summary-mean-glucose-mass-per-volume") == stats.mean_mgdl
    assert value("cgm-summary-sensor-active-percentage") == stats.sensor_active_pct
    assert value("cgm-summary-days-of-wear") == stats.days_with_cgm == 14


def test_one_reading_per_regular_cgm_reading_of_the_period(session: Session, imported: Patient) -> None:
    period = resolve_period(session, imported)
    stats = patient_stats(session, imported, period, actor="test")
    cgm = load_cgm(session, imported.id, imported.timezone, period.start_ms, period.end_ms)
    bundle = _build(session, imported, period)
    readings = _by_profile(bundle.document, "cgm-sensor-reading-mass-per-volume")
    assert len(readings) == bundle.readings == stats.readings == cgm.utc_ms.size > 3000
    assert [r["valueQuantity"]["value"] for r in readings] == cgm.mgdl.tolist()
    instants = [dt.datetime.fromisoformat(r["effectiveDateTime"]) for r in readings]
    assert [int(i.timestamp() * 1000) for i in instants] == cgm.utc_ms.tolist()
    assert {i.utcoffset() for i in instants} <= {dt.timedelta(hours=1), dt.timedelta(hours=2)}  # Berlin
    for reading in readings:
        assert reading["code"]["coding"] == [{"system": LOINC, "code": "99504-3"}]
        assert (reading["valueQuantity"]["code"], reading["valueQuantity"]["unit"]) == ("mg/dL", "mg/dl")
    (device,) = _resources(bundle.document, "Device")
    device_url = next(e["fullUrl"] for e in bundle.document["entry"] if e["resource"] is device)
    assert {r["device"]["reference"] for r in readings} == {device_url}
    assert device["meta"]["profile"] == [CGM + "cgm-device"]
    assert device["deviceName"] == [{"name": "Dexcom G6", "type": "user-friendly-name"}]
    assert device["identifier"][0]["system"] == "urn:glucoshare:device"


def test_readings_can_be_left_out(session: Session, imported: Patient) -> None:
    bundle = _build(session, imported, readings=False)
    assert bundle.readings == 0
    assert _by_profile(bundle.document, "cgm-sensor-reading-mass-per-volume") == []
    assert bundle.summary
    assert check_bundle(bundle.document) == []


def test_no_cgm_data_gives_no_made_up_summary(session: Session) -> None:
    patient = _patient(session, "empty@example.org")
    bundle = _build(session, patient)
    assert check_bundle(bundle.document) == []
    assert not bundle.summary
    assert (bundle.readings, bundle.devices) == (0, 0)
    assert [r["resourceType"] for r in _resources(bundle.document)] == ["Patient"]
    assert "valueQuantity" not in json.dumps(bundle.document)


def test_a_single_reading_has_no_cv_so_no_summary(session: Session, settings: Settings) -> None:
    patient = _patient(session, "single@example.org")
    header = (
        "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,"
        "Source Device ID,Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),"
        "Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),Transmitter ID\n"
    )
    text = header + "1,2025-03-01T10:00:00,EGV,,,,Android G6,120,,,,,100,8ABCDE\n"
    _import(session, settings, patient, WrittenExport("x.csv", text.encode(), []))
    bundle = _build(session, patient)
    assert check_bundle(bundle.document) == []
    assert (bundle.summary, bundle.readings, bundle.devices) == (False, 1, 1)
    (reading,) = _by_profile(bundle.document, "cgm-sensor-reading-mass-per-volume")
    assert reading["valueQuantity"]["value"] == 120.0
    assert reading["effectiveDateTime"] == "2025-03-01T10:00:00+01:00"


def test_sensor_limits_carry_a_comparator(session: Session, settings: Settings) -> None:
    patient = _patient(session, "limits@example.org")
    header = (
        "Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Event Subtype,Patient Info,Device Info,"
        "Source Device ID,Glucose Value (mg/dL),Insulin Value (u),Carb Value (grams),Duration (hh:mm:ss),"
        "Glucose Rate of Change (mg/dL/min),Transmitter Time (Long Integer),Transmitter ID\n"
    )
    rows = [("Low" if i == 2 else "High" if i == 5 else str(100 + i)) for i in range(8)]
    text = header + "".join(
        f"{i + 1},2025-03-01T10:{i * 5:02d}:00,EGV,,,,Android G6,{v},,,,,{100 + i * 300},8ABCDE\n"
        for i, v in enumerate(rows)
    )
    _import(session, settings, patient, WrittenExport("x.csv", text.encode(), []))
    bundle = _build(session, patient)
    assert check_bundle(bundle.document) == []
    quantities = [
        r["valueQuantity"] for r in _by_profile(bundle.document, "cgm-sensor-reading-mass-per-volume")
    ]
    assert [(q.get("comparator"), q["value"]) for q in quantities][1:6] == [
        (None, 101.0),
        ("<=", 40.0),
        (None, 103.0),
        (None, 104.0),
        (">=", 400.0),
    ]


def test_identifiers_are_deterministic(session: Session, imported: Patient) -> None:
    def keys(bundle: CgmBundle) -> list[tuple[str, str, str]]:
        return [
            (e["fullUrl"], e["request"]["ifNoneExist"], json.dumps(e["resource"]["identifier"]))
            for e in bundle.document["entry"]
        ]

    period = resolve_period(session, imported)
    one = _build(session, imported, period, now=dt.datetime(2025, 4, 1, tzinfo=dt.UTC))
    two = _build(session, imported, period, now=dt.datetime(2025, 5, 1, tzinfo=dt.UTC))
    assert keys(one) == keys(two)
    assert one.document["timestamp"] == "2025-04-01T00:00:00Z"
    urls = [e["fullUrl"] for e in one.document["entry"]]
    assert len(set(urls)) == len(urls)
    assert all(u.startswith("urn:uuid:") for u in urls)
    for entry in one.document["entry"]:
        ident = entry["resource"]["identifier"][0]
        assert entry["request"] == {
            "method": "POST",
            "url": entry["resource"]["resourceType"],
            "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
        }
    shorter = resolve_period(session, imported, first=period.first, last=period.last - dt.timedelta(days=1))
    other = {
        e["resource"]["identifier"][0]["value"] for e in _build(session, imported, shorter).document["entry"]
    }
    summaries = {
        r["identifier"][0]["value"] for r in _resources(one.document, "Observation") if "effectivePeriod" in r
    }
    assert not summaries & other  # another period: other summary identifiers
    readings = {
        r["identifier"][0]["value"] for r in _by_profile(one.document, "cgm-sensor-reading-mass-per-volume")
    }
    assert len(readings & other) > 3000  # the same readings keep theirs


def test_mmol_patients_get_mass_and_molar_means(
    session: Session, settings: Settings, clarity_mmol: WrittenExport
) -> None:
    patient = _patient(session, "mmol@example.org", units="mmol/L")
    _import(session, settings, patient, clarity_mmol)
    period = resolve_period(session, patient)
    stats = patient_stats(session, patient, period, actor="test")
    bundle = _build(session, patient, period)
    assert check_bundle(bundle.document) == []
    mass = _one(bundle.document, "cgm-summary-mean-glucose-mass-per-volume")["valueQuantity"]
    molar = _one(bundle.document, "cgm-summary-mean-glucose-moles-per-volume")["valueQuantity"]
    assert (mass["value"], mass["code"]) == (stats.mean_mgdl, "mg/dL")
    assert (molar["value"], molar["code"], molar["unit"]) == (
        pytest.approx(stats.mean_mgdl / 18.01559),
        "mmol/L",
        "mmol/l",
    )
    assert len(_one(bundle.document, "cgm-summary")["hasMember"]) == 7
    readings = _by_profile(bundle.document, "cgm-sensor-reading-mass-per-volume")
    expected = sorted(
        (e.utc_ms, e.value) for e in clarity_mmol.expected if e.type == "cbg" and e.subtype == "sensor"
    )
    by_time = dict(expected)
    for reading in readings[:50]:
        at = int(dt.datetime.fromisoformat(reading["effectiveDateTime"]).timestamp() * 1000)
        assert reading["valueQuantity"]["value"] == pytest.approx(by_time[at])  # mmol/L × 18.01559
        assert reading["valueQuantity"]["code"] == "mg/dL"


def test_pdf_report_is_attached_only_when_given(session: Session, imported: Patient) -> None:
    bundle = _build(session, imported, pdf=PDF, readings=False)
    assert check_bundle(bundle.document) == []
    assert bundle.report
    (report,) = _resources(bundle.document, "DiagnosticReport")
    assert report["meta"]["profile"] == [CGM + "cgm-summary-pdf"]
    assert report["code"]["coding"] == [{"system": LOINC, "code": "107931-8"}]
    (form,) = report["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]) == PDF
    panel_url = next(
        e["fullUrl"]
        for e in bundle.document["entry"]
        if CGM + "cgm-summary" in e["resource"].get("meta", {}).get("profile", [])
    )
    assert report["result"] == [{"reference": panel_url}]
    with pytest.raises(NotAPdfError):
        _build(session, imported, pdf=b"<html>not a pdf</html>")


def test_stats_read_is_audited(session: Session, imported: Patient) -> None:
    _build(session, imported, readings=False)
    actions = session.scalars(select(AuditEvent.action).where(AuditEvent.patient_id == imported.id)).all()
    assert actions.count("summaries:stats:read") == 1


# --- the conformance checker on broken bundles ------------------------------------------------


def _entry_of(document: dict[str, Any], profile_id: str) -> dict[str, Any]:
    return next(
        e for e in document["entry"] if CGM + profile_id in e["resource"].get("meta", {}).get("profile", [])
    )


def test_rules_report_a_wrong_loinc(small: dict[str, Any]) -> None:
    broken = copy.deepcopy(small)
    _entry_of(broken, "cgm-summary-gmi")["resource"]["code"]["coding"][0]["code"] = "4548-4"
    problems = check_bundle(broken)
    assert any("LOINC 97506-0" in p for p in problems), problems
    assert any("hasMember needs exactly one cgm-summary-gmi, found 0" in p for p in problems), problems


def test_rules_report_a_missing_time_in_range_component(small: dict[str, Any]) -> None:
    broken = copy.deepcopy(small)
    components = _entry_of(broken, "cgm-summary-times-in-ranges")["resource"]["component"]
    del components[2]
    problems = check_bundle(broken)
    assert problems == [
        "entry[4] Observation (cgm-summary-times-in-ranges): needs exactly one component 97510-2 (time in range (70–180 mg/dL)), found 0"
    ]


def test_rules_report_a_dangling_reference(small: dict[str, Any]) -> None:
    broken = copy.deepcopy(small)
    reading = _entry_of(broken, "cgm-sensor-reading-mass-per-volume")["resource"]
    reading["device"]["reference"] = "urn:uuid:00000000-0000-4000-8000-000000000000"
    problems = check_bundle(broken)
    assert len(problems) == 1
    assert "device does not resolve to an entry of the bundle" in problems[0]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda d: d.update(type="batch"), "type must be transaction"),
        (lambda d: d.pop("timestamp"), "timestamp must be an instant"),
        (
            lambda d: _entry_of(d, "cgm-summary-gmi")["resource"]["valueQuantity"].update(code="percent"),
            "valueQuantity.code must be UCUM '%'",
        ),
        (
            lambda d: _entry_of(d, "cgm-summary-days-of-wear")["resource"]["valueQuantity"].update(unit="d"),
            "valueQuantity.unit must be 'days'",
        ),
        (
            lambda d: _entry_of(d, "cgm-summary-gmi")["resource"].update(dataAbsentReason={"text": "x"}),
            "dataAbsentReason is only allowed without a value",
        ),
        (
            lambda d: _entry_of(d, "cgm-summary-coefficient-of-variation")["resource"].pop("valueQuantity"),
            "valueQuantity is required",
        ),
        (
            lambda d: _entry_of(d, "cgm-sensor-reading-mass-per-volume")["resource"].pop("valueQuantity"),
            "needs a value or a dataAbsentReason",
        ),
        (
            lambda d: _entry_of(d, "cgm-summary")["resource"]["effectivePeriod"].update(
                start="2025-03-01T00:00:00Z"
            ),
            "effectivePeriod.start must be a date YYYY-MM-DD",
        ),
        (lambda d: _entry_of(d, "cgm-summary")["resource"].pop("subject"), "subject is required"),
        (
            lambda d: _entry_of(d, "cgm-summary")["resource"]["hasMember"].pop(),
            "hasMember needs at least 6 members",
        ),
        (lambda d: d["entry"][1]["request"].pop("ifNoneExist"), "request.ifNoneExist must be"),
        (lambda d: d["entry"][1]["resource"].pop("identifier"), "needs an identifier"),
        (
            lambda d: d["entry"][2]["resource"].pop("presentedForm"),
            "needs a presentedForm of application/pdf",
        ),
        (lambda d: d["entry"][1]["resource"].pop("deviceName"), "needs exactly one deviceName"),
        (
            lambda d: _entry_of(d, "cgm-sensor-reading-mass-per-volume")["resource"].update(
                effectiveDateTime="2025-03-01T10:00:00"
            ),
            "effectiveDateTime must be the instant of the reading with its offset",
        ),
        (lambda d: d["entry"].append(copy.deepcopy(d["entry"][0])), "fullUrl is used by another entry"),
        (
            lambda d: d["entry"].append({**copy.deepcopy(d["entry"][0]), "fullUrl": "urn:uuid:other"}),
            "holds at most one Patient entry, found 2",
        ),
        (
            lambda d: d["entry"][3]["resource"]["meta"].update(profile=[CGM + "cgm-summary-gmi"]),
            "code must hold LOINC 97506-0 (cgm-summary-gmi)",
        ),
        (
            lambda d: d["entry"].append(
                {"fullUrl": "urn:uuid:x", "resource": {"resourceType": "MedicationStatement"}}
            ),
            "resource type is not one a CGM data receiver accepts",
        ),
    ],
)
def test_rules_report_each_broken_rule(small: dict[str, Any], breakage: Any, expected: str) -> None:
    broken = copy.deepcopy(small)
    breakage(broken)
    problems = check_bundle(broken)
    assert any(expected in p for p in problems), problems


def test_a_non_conforming_bundle_is_not_written(session: Session, imported: Patient, tmp_path: Path) -> None:
    bundle = _build(session, imported, readings=False)
    _entry_of(bundle.document, "cgm-summary")["resource"]["code"]["coding"][0]["code"] = "104643-2"
    out = tmp_path / "out" / "bundle.json"
    with pytest.raises(InternalError, match=r"breaks 1 rule\(s\)") as caught:
        write_cgm_bundle(bundle, out)
    assert "code must hold LOINC 107931-8" in caught.value.message
    assert not out.parent.exists()


# --- pure helpers -----------------------------------------------------------------------------


def test_instant_keeps_the_sources_offset() -> None:
    assert instant(1_714_644_900_000, 120) == "2024-05-02T12:15:00+02:00"
    assert instant(1_714_644_900_123, -300) == "2024-05-02T05:15:00.123-05:00"
    assert instant(1_714_644_900_000, 0) == "2024-05-02T10:15:00+00:00"
    assert instant(1_714_644_900_000, 15 * 60) == "2024-05-02T10:15:00+00:00"  # beyond FHIR's ±14:00


@given(
    mgdl=st.floats(min_value=40, max_value=400, allow_nan=False),
    time_ms=st.integers(min_value=946_684_800_000, max_value=4_102_444_800_000),
    offset=st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_any_reading_round_trips_in_mg_dl(mgdl: float, time_ms: int, offset: int) -> None:
    patient_url, device_url = "urn:uuid:11111111-1111-5111-8111-111111111111", "urn:uuid:2222"
    observation = reading_observation(
        SensorReading(time_ms, offset, mgdl, None, 1), patient_id="p", subject=patient_url, device=device_url
    )
    parsed = json.loads(json.dumps(observation))
    quantity = parsed["valueQuantity"]
    assert quantity == {"value": mgdl, "unit": "mg/dl", "system": UCUM, "code": "mg/dL"}
    moment = dt.datetime.fromisoformat(parsed["effectiveDateTime"])
    assert round(moment.timestamp() * 1000) == time_ms
    assert moment.utcoffset() == dt.timedelta(minutes=offset)
    model = get_fhir_model_class("Observation").model_validate(parsed)
    assert float(model.valueQuantity.value) == mgdl
    document = {
        "resourceType": "Bundle",
        "type": "transaction",
        "timestamp": "2025-01-01T00:00:00Z",
        "entry": [
            _post(
                patient_url, {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "p"}]}
            ),
            _post(
                device_url,
                {
                    "resourceType": "Device",
                    "identifier": [{"system": "urn:x", "value": "d"}],
                    "deviceName": [{"name": "Acme CGM", "type": "user-friendly-name"}],
                },
            ),
            _post("urn:uuid:3333", parsed),
        ],
    }
    assert check_bundle(document) == []


def _post(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    ident = resource["identifier"][0]
    return {
        "fullUrl": url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": resource["resourceType"],
            "ifNoneExist": f"identifier={ident['system']}|{ident['value']}",
        },
    }


# --- the command line ---------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str, str]:
    from glucoshare.cli import app  # noqa: PLC0415 - the command line is only loaded by its test

    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_writes_the_fhir_bundle(cli_env: Settings, clarity: WrittenExport, tmp_path: Path) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(clarity.data)
    assert _cli("patients", "add", "--email", "kim@example.org", "--name", "Kim", "--timezone", ZONE)[0] == 0
    code, _, err = _cli("import", str(source), "--patient", "kim@example.org")
    assert code == 0, err
    out = tmp_path / "out" / "bundle.json"
    code, stdout, err = _cli(
        "export", "--patient", "kim@example.org", "--format", "fhir", "--out", str(out), "--json"
    )
    assert code == 0, err
    report = json.loads(stdout)
    document = json.loads(out.read_text(encoding="utf-8"))
    assert out.stat().st_mode & 0o777 == 0o600
    assert check_bundle(document) == []
    assert report["format"] == "fhir"
    assert report["entries"] == len(document["entry"])
    assert report["summary"] is True
    assert (dt.date.fromisoformat(report["to"]) - dt.date.fromisoformat(report["from"])).days == 13
    readings = _by_profile(document, "cgm-sensor-reading-mass-per-volume")
    assert report["records"] == len(readings) > 3000
    # The DiagnosticReport carries the AGP report that the reports module prints, as PDF.
    (form,) = _one(document, "cgm-summary-pdf")["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]).startswith(b"%PDF-")

    code, stdout, err = _cli(
        "export", "--patient", "kim@example.org", "--format", "fhir", "--out", str(out),
        "--from", "2025-03-25", "--to", "2025-03-26", "--summary-only",
    )  # fmt: skip
    assert code == 0, err
    assert "for 2025-03-25 to 2025-03-26" in stdout
    document = json.loads(out.read_text(encoding="utf-8"))
    assert _by_profile(document, "cgm-sensor-reading-mass-per-volume") == []
    assert _one(document, "cgm-summary")["effectivePeriod"] == {"start": "2025-03-25", "end": "2025-03-26"}

    code, _, err = _cli(
        "export", "--patient", "kim@example.org", "--format", "csv", "--out", str(out), "--summary-only"
    )
    assert code == 2
    assert "--summary-only applies to --format fhir only" in err

    from glucoshare.cli import runtime  # noqa: PLC0415

    with runtime.unit_of_work() as session:
        details = session.scalars(
            select(AuditEvent.details)
            .where(AuditEvent.action == "records:data:export")
            .order_by(AuditEvent.id)
        ).all()
    assert [d["format"] for d in details] == ["fhir", "fhir"]
    assert details[1]["from"] == "2025-03-25"
    assert details[1]["records"] == 0
