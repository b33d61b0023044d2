"""Docs as tests: every setting, command, audit tag, format and record type is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from glucoshare.audit.tags import AuditTag
from glucoshare.cli import app
from glucoshare.config import Settings
from glucoshare.ingest.registry import importers
from glucoshare.records.vocabulary import RECORD_TYPES, SUBTYPES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _command_paths() -> list[str]:
    group = typer.main.get_command(app)
    paths: list[str] = []

    def walk(command: object, prefix: str) -> None:
        sub = getattr(command, "commands", None)
        if not sub:
            paths.append(prefix)
            return
        for name, child in sub.items():
            walk(child, f"{prefix} {name}".strip())

    walk(group, "")
    return sorted(paths)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_every_setting_is_documented(field: str) -> None:
    assert f"GLUCOSHARE_{field.upper()}" in (DOCS / "configuration.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", _command_paths())
def test_every_command_is_documented(command: str) -> None:
    assert f"## `glucoshare {command}" in (DOCS / "cli.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("tag", [t.value for t in AuditTag])
def test_every_audit_tag_is_documented(tag: str) -> None:
    assert f"`{tag}`" in (DOCS / "audit.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [i.format for i in importers()])
def test_every_format_is_documented(name: str) -> None:
    index = (DOCS / "formats" / "README.md").read_text(encoding="utf-8")
    (row,) = [line for line in index.splitlines() if line.startswith(f"| `{name}` |")]
    (link,) = re.findall(r"\]\(([\w-]+\.md)\)", row)
    page = DOCS / "formats" / link
    assert page.exists(), page
    assert f"`{name}`" in page.read_text(encoding="utf-8") or name.split("_", maxsplit=1)[0] in link


@pytest.mark.parametrize("record_type", RECORD_TYPES)
def test_every_record_type_and_subtype_is_documented(record_type: str) -> None:
    text = (DOCS / "data-model.md").read_text(encoding="utf-8")
    assert f"| `{record_type}` |" in text
    for subtype in SUBTYPES[record_type] - {""}:
        assert f"`{subtype}`" in text, subtype


def test_readme_quick_start_is_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_changelog_follows_keep_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert "keepachangelog.com" in text
