"""Installations for the backup tests: a database, a data folder and a key file, and the CLI run on them.

``build_world`` fills an installation the way people do: the demo clinic and patients (Dexcom
Clarity and LibreView imports, accounts, second factors, shares, summaries), a CareLink pump
export imported on the command line, API tokens, and over HTTP a sign-in and a failed one, Nightscout
entries, an upload-API data set, a sign-up, a password reset, an address change, a clinic's
invitation and a clinic's upload of a device nobody has yet (held, with its file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, select
from typer.testing import CliRunner

from glucoshare.accounts.totp import code_at
from glucoshare.cli import app, runtime
from glucoshare.config import Settings, get_settings
from glucoshare.db.models import Base
from glucoshare.db.session import create_db_engine
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.vault.keyfile import read_key_file
from glucoshare.web.app import create_app
from tests.ingest.helpers import profile

runner = CliRunner()
BASE_URL = "https://testserver"
NEW_PASSWORD_HOLDER = "a brand new and personal passphrase"  # noqa: S105 - a test account


@dataclasses.dataclass(frozen=True)
class Install:
    """Where one installation keeps its database, its data folder and its master key file."""

    url: str
    data_dir: Path
    key_file: Path

    @property
    def settings(self) -> Settings:
        """The installation's settings, as its commands read them."""
        return Settings(database_url=self.url, data_dir=self.data_dir, secret_key_file=self.key_file)


@contextlib.contextmanager
def cli_on(install: Install) -> Iterator[None]:
    """The environment of a command run on ``install`` (settings and engine read afresh)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLUCOSHARE_DATABASE_URL", install.url)
        patch.setenv("GLUCOSHARE_DATA_DIR", str(install.data_dir))
        patch.setenv("GLUCOSHARE_SECRET_KEY_FILE", str(install.key_file))
        patch.delenv("GLUCOSHARE_SMTP_URL", raising=False)
        get_settings.cache_clear()
        runtime.engine.cache_clear()
        try:
            yield
        finally:
            if runtime.engine.cache_info().currsize:
                runtime.engine().dispose()
            runtime.engine.cache_clear()
            get_settings.cache_clear()


def run(install: Install, *args: str) -> tuple[int, str, str]:
    """Run ``glucoshare ARGS`` on ``install``: exit code, stdout, stderr."""
    with cli_on(install):
        result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def run_json(install: Install, *args: str) -> Any:
    """Run a command that must succeed with ``--json``; its document."""
    code, out, err = run(install, *args, "--json")
    assert code == 0, err
    return json.loads(out)


Dump = dict[str, list[tuple[Any, ...]]]


def dump(url: str) -> Dump:
    """Every row of every table of the schema, read as the application reads it, in key order.

    JSON columns come with whether they are SQL ``NULL`` (a JSON ``null`` reads as ``None`` too).
    """
    engine = create_db_engine(url)
    tables: Dump = {}
    try:
        with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                nulls = [
                    c.is_(None).label(f"{c.name}__sql_null")
                    for c in table.columns
                    if isinstance(c.type, JSON)
                ]
                rows = conn.execute(select(*table.columns, *nulls)).all()
                keys = [list(table.columns).index(c) for c in table.primary_key.columns]
                tables[table.name] = sorted((tuple(r) for r in rows), key=lambda r: [r[k] for k in keys])
    finally:
        engine.dispose()
    return tables


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _pump_export(seed: int) -> tuple[str, bytes]:
    timeline = simulate(
        profile(seed=seed, therapy="pump", cgm="guardian4"), start=dt.date(2025, 6, 2), days=2
    )
    export = write_carelink(timeline)
    return export.file_name, export.data


@dataclasses.dataclass(frozen=True)
class World:
    """What a test needs to know of a built installation."""

    patient_id: str
    patient_email: str
    password: str


def build_world(install: Install, scratch: Path) -> World:
    """Fill ``install`` with the data of a small clinic (module notes); every table gets rows."""
    demo = run_json(install, "demo", "--patients", "2")
    patient = demo["patients"][0]["patient"]
    password = demo["logins"]["password"]
    clinician = next(a for a in demo["logins"]["accounts"] if a["totp_secret"])
    name, data = _pump_export(seed=11)
    pump = scratch / name
    pump.write_bytes(data)
    imported = run_json(install, "import", str(pump), "--patient", patient["email"])
    assert imported["uploads"][0]["format"] == "carelink"
    nightscout = run_json(install, "token", "create", "--patient", patient["email"], "--kind", "nightscout")
    uploader = run_json(install, "token", "create", "--patient", patient["email"], "--kind", "upload")

    engine = create_db_engine(install.url, keyring=read_key_file(install.key_file))
    try:
        with TestClient(create_app(install.settings, engine), base_url=BASE_URL) as http:
            login = http.post("/v1/auth/login", json={"email": patient["email"], "password": password})
            assert login.status_code == 200, login.text
            bearer = {"Authorization": f"Bearer {login.json()['token']}"}
            wrong = http.post("/v1/auth/login", json={"email": patient["email"], "password": "not it at all"})
            assert wrong.status_code == 401
            now = dt.datetime.now(dt.UTC).replace(microsecond=0)
            entries = [
                {
                    "type": "sgv",
                    "sgv": 100 + minutes,
                    "date": int((now - dt.timedelta(minutes=minutes)).timestamp() * 1000),
                    "dateString": (now - dt.timedelta(minutes=minutes)).isoformat(),
                    "direction": "Flat",
                    "device": "xDrip-DexcomG6",
                }
                for minutes in (5, 10, 15)
            ]
            posted = http.post(
                "/api/v1/entries", json=entries, headers={"api-secret": _sha1(nightscout["api_secret"])}
            )
            assert posted.status_code == 200, posted.text
            app_token = {"Authorization": f"Bearer {uploader['token']}"}
            device = {"manufacturer": "Dexcom", "model": "G7", "serial": "BACKUP01"}
            dataset = http.post("/v1/datasets", json={"device": device, "name": "phone-1"}, headers=app_token)
            assert dataset.status_code == 201, dataset.text
            readings = [
                {
                    "type": "cbg",
                    "time": (now - dt.timedelta(days=1, minutes=5 * i)).isoformat(),
                    "value": 120 + i,
                    "unit": "mg/dL",
                }
                for i in range(20)
            ]
            appended = http.post(
                f"/v1/datasets/{dataset.json()['id']}/records", json={"records": readings}, headers=app_token
            )
            assert appended.status_code == 200, appended.text
            assert (
                http.post(f"/v1/datasets/{dataset.json()['id']}/close", headers=app_token).status_code == 200
            )
            queued = http.post(  # a background import (run before the answer on SQLite)
                f"/v1/patients/{patient['id']}/imports",
                headers=bearer,
                files={"files": _pump_export(seed=29)},
            )
            assert queued.status_code == 202, queued.text
            rendered = http.post(f"/v1/patients/{patient['id']}/reports/agp/renders", headers=bearer)
            assert rendered.status_code == 202, rendered.text
            signup = http.post(
                "/v1/auth/signup",
                json={
                    "email": "new.person@example.org",
                    "name": "New Person",
                    "password": NEW_PASSWORD_HOLDER,
                },
            )
            assert signup.status_code == 202
            assert http.post("/v1/auth/password-reset", json={"email": patient["email"]}).status_code == 202
            moved = http.post(
                "/v1/account/email",
                json={"new_email": "moved@example.org", "password": password},
                headers=bearer,
            )
            assert moved.status_code == 202, moved.text
            doc = http.post(
                "/v1/auth/login",
                json={
                    "email": clinician["email"],
                    "password": password,
                    "totp": code_at(clinician["totp_secret"], time.time()),
                },
            )
            assert doc.status_code == 200, doc.text
            doc_bearer = {"Authorization": f"Bearer {doc.json()['token']}"}
            (clinic,) = http.get("/v1/clinics", headers=doc_bearer).json()
            invited = http.post(
                f"/v1/clinics/{clinic['id']}/invitations",
                json={"email": "invited@example.org"},
                headers=doc_bearer,
            )
            assert invited.status_code == 201, invited.text
            held = http.post(
                f"/v1/clinics/{clinic['id']}/uploads",
                headers=doc_bearer,
                files={"files": _pump_export(seed=23)},
            )
            assert held.status_code == 201, held.text
            assert held.json()[0]["outcome"] == "pending"
    finally:
        engine.dispose()
    return World(patient_id=patient["id"], patient_email=patient["email"], password=password)


def patient_stats(install: Install, world: World) -> tuple[Any, Any]:
    """The patient's stats document from the command line, and over HTTP after signing in."""
    by_cli = run_json(install, "stats", "--patient", world.patient_id)
    engine = create_db_engine(install.url, keyring=read_key_file(install.key_file))
    try:
        with TestClient(create_app(install.settings, engine), base_url=BASE_URL) as http:
            login = http.post(
                "/v1/auth/login", json={"email": world.patient_email, "password": world.password}
            )
            assert login.status_code == 200, login.text
            answer = http.get(
                f"/v1/patients/{world.patient_id}/stats",
                params={"days": 14},
                headers={"Authorization": f"Bearer {login.json()['token']}"},
            )
            assert answer.status_code == 200, answer.text
            by_http = answer.json()
    finally:
        engine.dispose()
    return by_cli, by_http
