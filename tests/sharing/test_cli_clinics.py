"""``glucoshare clinics add|add-member|list`` (CONTRACT.md)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.sharing.codes import ALPHABET

runner = CliRunner()


def test_clinics_add_prints_id_and_share_code_and_members_are_added(cli_env: Settings) -> None:
    added = runner.invoke(app, ["clinics", "add", "--name", "Sunrise Clinic", "--json"])
    assert added.exit_code == 0, added.stderr
    clinic = json.loads(added.stdout)
    assert set(clinic) == {"id", "share_code"}
    groups = clinic["share_code"].split("-")
    assert [len(g) for g in groups] == [4, 4, 4]
    assert set("".join(groups)) <= set(ALPHABET)
    runner.invoke(app, ["users", "add", "--email", "doc@example.org", "--name", "Doc", "--role", "clinician"])
    member = runner.invoke(
        app,
        ["clinics", "add-member", "--clinic", clinic["id"], "--email", "doc@example.org", "--role", "admin"],
    )
    assert member.exit_code == 0, member.stderr
    listed = json.loads(runner.invoke(app, ["clinics", "list", "--json"]).stdout)
    assert [c["name"] for c in listed["clinics"]] == ["Sunrise Clinic"]


def test_clinics_add_member_refuses_unknown_clinics_roles_and_non_clinicians(cli_env: Settings) -> None:
    clinic = json.loads(runner.invoke(app, ["clinics", "add", "--name", "C", "--json"]).stdout)
    runner.invoke(
        app, ["users", "add", "--email", "mum@example.org", "--name", "Mum", "--role", "carepartner"]
    )
    runner.invoke(app, ["users", "add", "--email", "doc@example.org", "--name", "Doc", "--role", "clinician"])
    unknown = runner.invoke(app, ["clinics", "add-member", "--clinic", "nope", "--email", "doc@example.org"])
    assert unknown.exit_code == 2
    assert "no clinic" in unknown.stderr
    carer = runner.invoke(
        app, ["clinics", "add-member", "--clinic", clinic["id"], "--email", "mum@example.org"]
    )
    assert carer.exit_code == 2
    assert "clinicians" in carer.stderr
    role = runner.invoke(
        app,
        ["clinics", "add-member", "--clinic", clinic["id"], "--email", "doc@example.org", "--role", "boss"],
    )
    assert role.exit_code == 2
