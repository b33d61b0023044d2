"""The layout rules of DEVELOPERS.md and docs/architecture.md, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine

from glucoshare.db.migrate import alembic_config

SRC = Path(__file__).resolve().parents[1] / "src" / "glucoshare"
DOMAINS = ("accounts", "audit", "devices", "records", "ingest", "export", "analytics", "simulator")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _modules(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("analytics"), ids=lambda p: p.name)
def test_analytics_is_pure_numpy(path: Path) -> None:
    forbidden = ("sqlalchemy", "fastapi", "glucoshare.db", "glucoshare.web", "glucoshare.cli", "pandas")
    bad = {name for name in _imports(path) if name.startswith(forbidden)}
    assert not bad, f"{path.name} imports {bad}"


@pytest.mark.parametrize("package", DOMAINS)
def test_domains_do_not_depend_on_the_interfaces(package: str) -> None:
    for path in _modules(package):
        bad = {
            name for name in _imports(path) if name.startswith(("glucoshare.cli", "glucoshare.web", "typer"))
        }
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_services_never_commit() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.parts[-2] in ("db", "cli", "migrations"):
            continue
        if ".commit(" in path.read_text(encoding="utf-8"):
            offenders.append(str(path.relative_to(SRC)))
    assert offenders == []


def test_settings_are_not_read_at_import_time() -> None:
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and "get_settings()" in ast.unparse(node):
                pytest.fail(f"{path.relative_to(SRC)} reads settings at import time")


def test_migrations_match_the_models(engine: Engine) -> None:
    command.check(alembic_config(engine))
