"""Damaged files of every layout, imported as ``glucoshare import`` imports them, on SQLite and PostgreSQL.

Each test stores a layout's valid seed for a patient, then imports damaged copies of it
(:mod:`tests.fuzz.mutations`) one case at a time, each in its own unit of work, and judges every
outcome (:mod:`tests.fuzz.oracle`): stored and plausible, or refused with an error of Glucoshare's
error tree, no health data in the message and nothing changed. The number of cases comes from the
hypothesis profile: ``fast`` (the default, CI) runs its ``max_examples`` per layout on SQLite and a
fifth of them on PostgreSQL; ``make fuzz`` loads the ``fuzz`` profile (``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine

from glucoshare.config import Settings
from glucoshare.ingest.registry import importers
from tests.fuzz.mutations import Case, cases
from tests.fuzz.oracle import FuzzTarget, fuzz_settings
from tests.fuzz.seeds import LAYOUTS, layout

POSTGRES_SHARE = 5
"""PostgreSQL runs one case in this many of SQLite's (the same code path, a slower server)."""


def examples(engine: Engine) -> int:
    """How many cases one layout gets on this engine under the loaded profile."""
    base = hypothesis_settings.default.max_examples
    return base if engine.dialect.name == "sqlite" else max(5, base // POSTGRES_SHARE)


def test_every_registered_importer_has_a_fuzzed_layout() -> None:
    fuzzed = {layout(name).format for name in LAYOUTS}
    assert fuzzed == {importer.format for importer in importers()}
    assert {layout(name).kind for name in LAYOUTS} >= {"text", "json", "xml", "xls", "zip", "folder"}


@pytest.mark.parametrize("name", LAYOUTS)
def test_a_damaged_file_is_stored_plausibly_or_refused_leaving_everything_as_it_was(
    name: str, engine: Engine, settings: Settings, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    target = FuzzTarget.create(engine, fuzz_settings(settings), tmp_path / "folders", name)
    dialect = engine.dialect.name

    @given(case=cases(name))
    @hypothesis_settings(
        max_examples=examples(engine),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    def check(case: Case) -> None:
        target.run(case, tally=dialect)

    # Saved failures replay per layout and engine (the inner function's source is the same for all).
    check.hypothesis.inner_test._hypothesis_internal_add_digest = request.node.nodeid.encode()  # type: ignore[attr-defined]
    check()
