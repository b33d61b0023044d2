"""The command line as CONTRACT.md fixes it: commands, one JSON document on stdout, exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glucoshare.accounts.models import ApiToken
from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.vault.keyfile import load_or_create
from tests.ingest.helpers import profile

runner = CliRunner()


def run(*args: str, input_text: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input_text)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def clarity_file(tmp_path: Path) -> Path:
    timeline = simulate(profile(seed=4), start=dt.date(2025, 3, 1), days=3)
    export = write_clarity(timeline)
    path = tmp_path / "misleading-name.txt"
    path.write_bytes(export.data)
    return path


@pytest.fixture
def patient(cli_env: Settings) -> str:
    code, out, err = run(
        "patients",
        "add",
        "--email",
        "Kim@Example.org",
        "--name",
        "Kim Lee",
        "--timezone",
        "Europe/Berlin",
        "--birthdate",
        "1991-02-03",
        "--units",
        "mmol/L",
        "--json",
    )
    assert code == 0, err
    return json.loads(out)["id"]


def test_patients_add_and_list(patient: str) -> None:
    code, out, _ = run("patients", "list", "--json")
    assert code == 0
    patients = json.loads(out)["patients"]
    assert [(p["id"], p["email"], p["display_units"], p["birthdate"]) for p in patients] == [
        (patient, "kim@example.org", "mmol/L", "1991-02-03")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-email", "--name", "X"], "email: not a valid e-mail address"),
        (["--email", "a@b.org", "--name", "X", "--timezone", "Nowhere/Land"], "unknown time zone"),
        (["--email", "a@b.org", "--name", "X", "--units", "mg"], "display_units"),
        (["--email", "a@b.org", "--name", "X", "--birthdate", "3000-01-01"], "birth date"),
    ],
)
def test_patients_add_refuses_bad_input(cli_env: Settings, args: list[str], message: str) -> None:
    code, out, err = run("patients", "add", *args, "--json")
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_duplicate_patient_is_exit_2(patient: str) -> None:
    code, _, err = run("patients", "add", "--email", "kim@example.org", "--name", "Again")
    assert code == 2
    assert "already exists" in err


def test_import_json_matches_the_contract(patient: str, clarity_file: Path) -> None:
    code, out, err = run("import", str(clarity_file), "--patient", "KIM@example.org", "--json")
    assert code == 0, err
    document = json.loads(out)
    (upload,) = document["uploads"]
    for key in ("id", "file", "format", "device", "counts", "new", "duplicates", "first", "last"):
        assert key in upload
    assert upload["format"] == "dexcom_clarity"
    assert upload["file"] == "misleading-name.txt"
    assert set(upload["device"]) >= {"manufacturer", "model", "serial"}
    assert upload["new"] == sum(upload["counts"].values())
    assert upload["duplicates"] == 0
    assert upload["first"].endswith("Z")
    code, out, _ = run("import", str(clarity_file), "--patient", patient, "--json")
    assert code == 0
    again = json.loads(out)["uploads"][0]
    assert (again["new"], again["duplicates"]) == (0, upload["new"])


def test_uploads_list_and_delete(patient: str, clarity_file: Path) -> None:
    _, out, _ = run("import", str(clarity_file), "--patient", patient, "--json")
    upload_id = json.loads(out)["uploads"][0]["id"]
    code, out, _ = run("uploads", "list", "--patient", patient, "--json")
    assert code == 0
    assert [u["id"] for u in json.loads(out)["uploads"]] == [upload_id]
    code, out, err = run("uploads", "delete", upload_id)
    assert code == 0, err
    code, out, _ = run("uploads", "list", "--patient", patient, "--json")
    assert json.loads(out)["uploads"] == []
    code, _, err = run("uploads", "delete", upload_id)
    assert code == 2
    assert "no upload with this id" in err


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", ["import", "{file}", "--patient", "nobody@example.org"], "no patient with this e-mail"),
        ("patient", ["import", "{missing}", "--patient", "kim@example.org"], "cannot read the file"),
        ("patient", ["import", "{empty}", "--patient", "kim@example.org"], "the file is empty"),
        (
            "patient",
            ["import", "{file}", "--patient", "kim@example.org", "--timezone", "X/Y"],
            "unknown time zone",
        ),
        (
            "patient",
            ["export", "--patient", "kim@example.org", "--format", "csv", "--out", "{dir}"],
            "is a directory",
        ),
        (
            "patient",
            [
                "export",
                "--patient",
                "kim@example.org",
                "--format",
                "csv",
                "--out",
                "{out}",
                "--from",
                "2025-13-01",
            ],
            "--from: '2025-13-01' is not a date",
        ),
        ("patient", ["uploads", "list", "--patient", "nobody@example.org"], "no patient"),
    ],
)
def test_bad_requests_exit_2_with_one_line(
    request: pytest.FixtureRequest,
    cli_env: Settings,
    tmp_path: Path,
    clarity_file: Path,
    setup: str,
    args: list[str],
    message: str,
) -> None:
    if setup == "patient":
        request.getfixturevalue("patient")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    paths = {
        "file": str(clarity_file),
        "missing": str(tmp_path / "nope.csv"),
        "empty": str(empty),
        "dir": str(tmp_path),
        "out": str(tmp_path / "out.csv"),
    }
    code, out, err = run(*[a.format(**paths) for a in args])
    assert code == 2
    assert message in err
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_import_is_all_or_nothing(patient: str, clarity_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\x01binary")
    code, _, err = run("import", str(clarity_file), str(bad), "--patient", patient, "--json")
    assert code == 2
    assert "bad.csv" in err
    _, out, _ = run("uploads", "list", "--patient", patient, "--json")
    assert json.loads(out)["uploads"] == []


def test_import_reads_folders_and_zip_archives(patient: str, clarity_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Export May"
    (folder / "cgm").mkdir(parents=True)
    (folder / "cgm" / "clarity.csv").write_bytes(clarity_file.read_bytes())
    (folder / "read me.txt").write_text("exported for the clinic\n")
    (folder / ".hidden.csv").write_bytes(clarity_file.read_bytes())
    outside = tmp_path / "secret.csv"
    outside.write_bytes(clarity_file.read_bytes())
    (folder / "link.csv").symlink_to(outside)
    code, out, err = run("import", str(folder), "--patient", patient, "--json")
    assert code == 0, err
    (upload,) = json.loads(out)["uploads"]
    assert upload["file"] == "Export May/cgm/clarity.csv"
    assert upload["format"] == "dexcom_clarity"
    assert "read me.txt (unrecognised format)" in upload["warnings"][-1]
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("clarity.csv", clarity_file.read_bytes())
    code, out, err = run("import", str(archive), "--patient", patient, "--json")
    assert code == 0, err
    (upload,) = json.loads(out)["uploads"]
    assert (upload["file"], upload["new"]) == ("export.zip/clarity.csv", 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("import", str(empty), "--patient", patient)
    assert code == 2
    assert "holds no files" in err


def test_export_csv_and_json(patient: str, clarity_file: Path, tmp_path: Path) -> None:
    run("import", str(clarity_file), "--patient", patient)
    csv_out, json_out = tmp_path / "all.csv", tmp_path / "day.json"
    code, out, err = run("export", "--patient", patient, "--format", "csv", "--out", str(csv_out), "--json")
    assert code == 0, err
    written = json.loads(out)["records"]
    lines = csv_out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == written + 1
    assert lines[0].startswith("id,type,subtype,time_utc,local_time")
    code, out, err = run(
        "export",
        "--patient",
        patient,
        "--format",
        "json",
        "--out",
        str(json_out),
        "--from",
        "2025-03-02",
        "--to",
        "2025-03-02",
    )
    assert code == 0, err
    document = json.loads(json_out.read_text(encoding="utf-8"))
    assert document["patient"]["email"] == "kim@example.org"
    days = {r["local_time"][:10] for r in document["records"]}
    assert days == {"2025-03-02"}
    assert all(r["upload_id"] and r["source_line"] > 1 for r in document["records"])


def test_audit_verify_detects_tampering(patient: str, clarity_file: Path, cli_env: Settings) -> None:
    run("import", str(clarity_file), "--patient", patient)
    code, out, _ = run("audit", "verify", "--json")
    assert code == 0
    assert json.loads(out)["intact"] is True
    from sqlalchemy import text  # noqa: PLC0415

    from glucoshare.db.session import create_db_engine  # noqa: PLC0415

    engine = create_db_engine(cli_env.effective_database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE audit_events SET actor = 'someone else' WHERE id = (SELECT min(id) FROM audit_events)"
            )
        )
    engine.dispose()
    code, out, err = run("audit", "verify", "--json")
    assert code == 2
    assert json.loads(out)["intact"] is False
    assert "audit chain broken at event" in err


def test_db_upgrade(cli_env: Settings) -> None:
    code, out, _ = run("db", "upgrade")
    assert code == 0
    assert "schema up to date" in out


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["import", "--help"],
        ["patients", "add", "--help"],
        ["uploads", "delete", "--help"],
        ["export", "--help"],
        ["demo", "--help"],
        ["audit", "verify", "--help"],
        ["db", "upgrade", "--help"],
    ):
        code, out, _ = run(*args)
        assert code == 0
        assert "Usage" in out


def test_installed_entry_point_keeps_stdout_clean(tmp_path: Path, clarity_file: Path) -> None:
    env = {**os.environ, "GLUCOSHARE_DATA_DIR": str(tmp_path / "data")}
    env.pop("GLUCOSHARE_DATABASE_URL", None)
    exe = Path(sys.executable).with_name("glucoshare")

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], capture_output=True, text=True, env=env, check=False, timeout=120
        )

    added = call("patients", "add", "--email", "e@example.org", "--name", "E", "--json")
    assert added.returncode == 0, added.stderr
    imported = call("import", str(clarity_file), "--patient", "e@example.org", "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["uploads"][0]["new"] > 0
    missing = call("import", str(clarity_file), "--patient", "x@example.org", "--json")
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr.strip() == "error: no patient with this e-mail address or id"
    assert (tmp_path / "data" / "glucoshare.db").exists()


def test_demo_imports_once_and_reports(cli_env: Settings) -> None:
    code, out, err = run("demo", "--patients", "3", "--json")
    assert code == 0, err
    first = json.loads(out)["patients"]
    assert [p["uploads"][0]["format"] for p in first] == ["dexcom_clarity", "libreview", "carelink"]
    for patient in first:
        assert patient["uploads"][0]["new"] > 1000
        assert patient["overview"]["cgm"]["readings"] > 1000
        assert 40 < patient["overview"]["cgm"]["mean_mgdl"] < 400
    code, out, _ = run("demo", "--patients", "3", "--json")
    assert code == 0
    again = json.loads(out)["patients"]
    assert [u["new"] for p in again for u in p["uploads"]] == [0, 0, 0]
    for before, after in zip(first, again, strict=True):
        assert after["overview"]["uploads"] == before["overview"]["uploads"] + 1
        assert (after["overview"]["counts"], after["overview"]["cgm"]) == (
            before["overview"]["counts"],
            before["overview"]["cgm"],
        )
    exports = sorted((cli_env.data_dir / "demo").rglob("*.csv"))
    assert len(exports) == 3


def test_demo_makes_a_clinic_and_logins_that_work(cli_env: Settings) -> None:
    from glucoshare.accounts.totp import code_at  # noqa: PLC0415
    from glucoshare.accounts.users import attempt_login  # noqa: PLC0415
    from glucoshare.cli import runtime  # noqa: PLC0415
    from glucoshare.sharing.models import Clinic, Share  # noqa: PLC0415

    code, out, err = run("demo", "--patients", "2", "--json")
    assert code == 0, err
    logins = json.loads(out)["logins"]
    roles = sorted(a["role"] for a in logins["accounts"])
    assert roles == ["care partner", "clinician (admin)", "clinician (member)", "patient", "patient"]
    stored = cli_env.data_dir / "demo" / "logins.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    code, out, _ = run("demo", "--patients", "2", "--json")
    assert json.loads(out)["logins"]["password"] == logins["password"]  # the same logins again
    code, text, _ = run("demo", "--patients", "2")
    assert "Demo logins" in text
    assert logins["password"] in text
    doctor = next(a for a in logins["accounts"] if a["role"] == "clinician (admin)")
    with runtime.unit_of_work() as session:
        for account in logins["accounts"]:
            second = code_at(account["totp_secret"], time.time()) if account["totp_secret"] else None
            attempt = attempt_login(
                session,
                email=account["email"],
                password=logins["password"],
                code=second,
                ip=None,
                user_agent=None,
                settings=cli_env,
            )
            assert attempt.login is not None, account["email"]
        clinic = session.query(Clinic).filter(Clinic.name == logins["clinic"]).one()
        shares = session.query(Share).filter(Share.clinic_id == clinic.id, Share.revoked_at.is_(None)).count()
        assert shares == 2
    assert doctor["recovery_codes"]


def test_another_patients_device_is_exit_2_naming_the_file(patient: str, clarity_file: Path) -> None:
    code, _, err = run("import", str(clarity_file), "--patient", patient)
    assert code == 0, err
    run("patients", "add", "--email", "other@example.org", "--name", "Other")
    code, out, err = run("import", str(clarity_file), "--patient", "other@example.org", "--json")
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {clarity_file.name}: ")
    assert "belongs to another patient" in err
    assert len(err.strip().splitlines()) == 1


def test_data_directory_database_and_raw_files_are_private(
    tmp_path: Path, clarity_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from glucoshare.cli import runtime  # noqa: PLC0415
    from glucoshare.config import get_settings  # noqa: PLC0415

    data = tmp_path / "fresh" / "data"
    monkeypatch.setenv("GLUCOSHARE_DATA_DIR", str(data))
    monkeypatch.delenv("GLUCOSHARE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    runtime.engine.cache_clear()
    try:
        assert run("patients", "add", "--email", "p@example.org", "--name", "P")[0] == 0
        assert run("import", str(clarity_file), "--patient", "p@example.org")[0] == 0
        assert run("demo", "--patients", "1")[0] == 0
    finally:
        runtime.engine().dispose()
        runtime.engine.cache_clear()
        get_settings.cache_clear()
    assert data.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700
    for path in data.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path


def test_token_create_with_roles_and_unknown_roles(patient: str, cli_env: Settings) -> None:
    code, out, err = run(
        "token", "create", "--patient", "kim@example.org", "--kind", "read", "--role", "readable",
        "--role", "careportal", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["kind"] == "read"
    assert created["api_secret"] is None
    engine = create_db_engine(
        cli_env.effective_database_url, keyring=load_or_create(cli_env.effective_secret_key_file)
    )
    with session_scope(engine) as session:
        row = session.get(ApiToken, created["id"])
        assert row is not None
        assert row.roles == ["careportal", "readable"]
    engine.dispose()
    code, out, err = run(
        "token", "create", "--patient", "kim@example.org", "--kind", "read", "--role", "superuser", "--json"
    )
    assert code == 2
    assert out == ""
    assert "unknown role 'superuser'" in err
