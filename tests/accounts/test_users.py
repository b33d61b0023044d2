"""Accounts on both databases: one per e-mail, passwords, TOTP with skew and replay, recovery codes,
and one answer for every failed login."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from glucoshare.accounts.errors import (
    AuthenticationError,
    InvalidSecondFactorError,
    UserExistsError,
    WeakPasswordError,
)
from glucoshare.accounts.models import Patient, RecoveryCode, User
from glucoshare.accounts.service import get_patient
from glucoshare.accounts.totp import code_at
from glucoshare.accounts.users import (
    add_user,
    authenticate,
    confirm_totp_enrolment,
    enable_totp,
    validate_user,
)
from glucoshare.cli import app
from glucoshare.config import Settings

PASSWORD = "a long and personal passphrase"  # noqa: S105 - a test account
NOW = 1_800_000_000.0  # a fixed moment: TOTP steps are exact


def _user(session: Session, role: str = "patient", email: str = "kim@example.org") -> User:
    return add_user(session, validate_user(email=email, name="Kim Lee", role=role), PASSWORD)


def test_one_account_per_email_whatever_the_case(session: Session) -> None:
    _user(session)
    with pytest.raises(UserExistsError):
        _user(session, email="KIM@Example.org")


def test_a_weak_password_is_refused_and_nothing_stored(session: Session) -> None:
    with pytest.raises(WeakPasswordError, match="at least 15"):
        add_user(session, validate_user(email="a@example.org", name="A", role="patient"), "short")
    assert session.scalar(select(User)) is None


def test_password_login_and_one_answer_for_every_failure(session: Session) -> None:
    _user(session)
    assert authenticate(session, email="Kim@example.org", password=PASSWORD).user.email == "kim@example.org"
    answers = set()
    for email, password in (
        ("kim@example.org", "wrong wrong wrong"),
        ("nobody@example.org", PASSWORD),
        ("x", "y"),
    ):
        with pytest.raises(AuthenticationError) as caught:
            authenticate(session, email=email, password=password)
        answers.add((caught.value.message, caught.value.http_status))
    assert len(answers) == 1


def test_totp_with_one_step_of_skew_and_no_replay(session: Session) -> None:
    user = _user(session)
    secret = enable_totp(session, user).secret
    with pytest.raises(AuthenticationError):
        authenticate(session, email=user.email, password=PASSWORD, now=NOW)  # code missing
    assert authenticate(session, email=user.email, password=PASSWORD, code=code_at(secret, NOW - 30), now=NOW)
    with pytest.raises(AuthenticationError):  # the same code again: replay
        authenticate(session, email=user.email, password=PASSWORD, code=code_at(secret, NOW - 30), now=NOW)
    with pytest.raises(AuthenticationError):  # two steps away: outside the skew
        authenticate(session, email=user.email, password=PASSWORD, code=code_at(secret, NOW + 60), now=NOW)
    assert authenticate(session, email=user.email, password=PASSWORD, code=code_at(secret, NOW + 30), now=NOW)
    with pytest.raises(AuthenticationError):  # an older step after a newer one was used
        authenticate(session, email=user.email, password=PASSWORD, code=code_at(secret, NOW), now=NOW)


@pytest.mark.parametrize(
    ("secret", "code"),
    [
        ("not base32 at all!", "123456"),  # binascii.Error
        ("ABCDEFGHIJKLMNOP", "123456"),  # base32, but 80 bits: pyotp wants 112
        ("\u00e9" * 32, "123456"),  # not ASCII
        ("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "\u00b2" * 6),  # passes str.isdigit(), not compare_digest
    ],
)
def test_an_unusable_secret_or_code_is_a_wrong_code_not_a_crash(
    session: Session, secret: str, code: str
) -> None:
    # Found by the OpenAPI fuzzer (tests/web/test_openapi_fuzz.py): POST /v1/account/second-factor/confirm
    # with such a secret or code answered 500.
    with pytest.raises(InvalidSecondFactorError, match="the code does not match"):
        confirm_totp_enrolment(session, _user(session), secret=secret, code=code, now=NOW)


def test_recovery_codes_work_once_each(session: Session) -> None:
    user = _user(session)
    enrolment = enable_totp(session, user)
    assert len(set(enrolment.recovery_codes)) == 10
    code = enrolment.recovery_codes[3].lower()
    assert authenticate(session, email=user.email, password=PASSWORD, code=code, now=NOW)
    with pytest.raises(AuthenticationError):
        authenticate(session, email=user.email, password=PASSWORD, code=code, now=NOW)
    session.expire_all()
    stored = session.scalars(select(User)).one()
    assert stored.totp_secret == enrolment.secret
    assert stored.totp_secret_sealed is not None
    assert enrolment.secret.encode() not in stored.totp_secret_sealed
    assert all(c not in json.dumps([r.digest for r in user_codes(session)]) for c in enrolment.recovery_codes)


def user_codes(session: Session) -> list[RecoveryCode]:
    return list(session.scalars(select(RecoveryCode)))


def test_clinicians_must_enrol_a_second_factor(session: Session) -> None:
    clinician = _user(session, role="clinician")
    assert authenticate(session, email=clinician.email, password=PASSWORD).must_enrol_second_factor
    enable_totp(session, clinician)
    secret = clinician.totp_secret
    assert secret is not None
    login = authenticate(
        session, email=clinician.email, password=PASSWORD, code=code_at(secret, NOW), now=NOW
    )
    assert not login.must_enrol_second_factor


runner = CliRunner()


def test_cli_users_add_and_totp_enable_as_the_contract_says(cli_env: Settings) -> None:
    result = runner.invoke(
        app,
        [
            "users",
            "add",
            "--email",
            "Dr@Clinic.example",
            "--name",
            "Dr Who",
            "--role",
            "clinician",
            "--password-stdin",
            "--json",
        ],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.stderr
    user = json.loads(result.stdout)
    assert (user["email"], user["role"], user["has_password"]) == ("dr@clinic.example", "clinician", True)
    assert PASSWORD not in result.stdout
    result = runner.invoke(app, ["users", "totp-enable", "--email", "dr@clinic.example", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert len(document["secret"]) == 32
    assert len(document["recovery_codes"]) == 10
    bad = runner.invoke(app, ["users", "add", "--email", "x@example.org", "--name", "X", "--role", "admin"])
    assert bad.exit_code == 2
    assert "--role" in bad.stderr


def test_cli_patients_add_with_a_password_creates_their_account(cli_env: Settings, session: Session) -> None:
    result = runner.invoke(
        app,
        ["patients", "add", "--email", "pat@example.org", "--name", "Pat", "--password-stdin", "--json"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.stderr
    patient = json.loads(result.stdout)
    assert patient["user_id"]
    weak = runner.invoke(
        app,
        ["patients", "add", "--email", "weak@example.org", "--name", "W", "--password-stdin"],
        input="weak\n",
    )
    assert weak.exit_code == 2
    assert "at least 15" in weak.stderr
    assert session.scalar(select(Patient).where(Patient.email == "weak@example.org")) is None


def test_a_patient_sees_who_accessed_their_data(cli_env: Settings) -> None:
    runner.invoke(app, ["patients", "add", "--email", "pat@example.org", "--name", "Pat"])
    runner.invoke(app, ["stats", "--patient", "pat@example.org"])
    result = runner.invoke(app, ["audit", "access", "--patient", "pat@example.org", "--json"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    actions = [entry["action"] for entry in document["entries"]]
    assert actions[:2] == ["summaries:stats:read", "accounts:patient:create"]
    assert all(entry["actor"].startswith("cli") for entry in document["entries"])
    again = json.loads(
        runner.invoke(app, ["audit", "access", "--patient", "pat@example.org", "--json"]).stdout
    )
    assert again["entries"][0]["action"] == "audit:access-log:read"


def test_cli_patients_delete_needs_confirmation(cli_env: Settings, session: Session) -> None:
    runner.invoke(app, ["patients", "add", "--email", "pat@example.org", "--name", "Pat"])
    refused = runner.invoke(app, ["patients", "delete", "--patient", "pat@example.org"])
    assert refused.exit_code == 2
    assert "--yes" in refused.stderr
    assert get_patient(session, "pat@example.org") is not None
    done = runner.invoke(app, ["patients", "delete", "--patient", "pat@example.org", "--yes", "--json"])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["uploads"] == 0
    session.expire_all()
    assert session.scalar(select(Patient).where(Patient.email == "pat@example.org")) is None
