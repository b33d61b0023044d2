"""``glucoshare import`` killed with SIGKILL at twenty random moments of a large import.

After each kill the patient holds exactly what they held before (no upload, no record, no device),
or, when the kill came after the commit, the whole upload; the database passes its integrity check
and the audit chain verifies. Then the import, tried again, stores exactly what an import that was
never interrupted stores, and a second try finds only duplicates.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from glucoshare.config import Settings
from tests.faults.checks import (
    Outcome,
    assert_sound,
    complete,
    holdings,
    raw_file_of,
    raw_leftovers,
    remove_last_upload,
    seconds_until_visible,
    wait_for_victims,
)
from tests.faults.conftest import Installation, new_patient
from tests.faults.harness import ForkServer, KillPoint, kill_during, spread_moments

KILLS = 20
PATIENT = "killed.import@example.org"


def _import(path: Path, email: str) -> list[str]:
    return ["glucoshare", "import", str(path), "--patient", email, "--json"]


def test_an_import_killed_at_any_moment_stores_nothing_and_the_retry_is_exact(
    engine: Engine,
    settings: Settings,
    victim_env: dict[str, str],
    forks: ForkServer,
    import_export: Path,
    reference: Installation,
    seed: int,
    tmp_path: Path,
) -> None:
    patient = new_patient(engine, PATIENT)
    new_patient(reference.engine, PATIENT)

    # An import never interrupted (another installation): the outcome to expect, and when it commits.
    uninterrupted = forks.start(
        _import(import_export, PATIENT), reference.env, tmp_path / "ref.out", tmp_path / "ref.err"
    )
    commit_at = seconds_until_visible(reference.engine, uninterrupted)
    assert uninterrupted.wait(120) == 0, (tmp_path / "ref.err").read_text()
    expected = Outcome.of_json((tmp_path / "ref.out").read_text())
    assert expected.new > 60_000

    # Spread over the whole transaction (parse, store, commit) and a little beyond.
    moments = spread_moments(seed, KILLS, commit_at * 1.1)
    print(f"import commits after {commit_at:.2f} s; kill moments (s): {[round(m, 3) for m in moments]}")  # noqa: T201
    before = holdings(engine, patient)
    committed: list[KillPoint] = []
    raw_left: list[int] = []

    def verify(point: KillPoint) -> None:
        nonlocal before
        wait_for_victims(engine)
        where = f"seed {seed}, {point.describe()}"
        assert_sound(engine)
        found = holdings(engine, patient)
        if found != before:
            # Only a kill after the commit may leave anything, and then the whole upload.
            assert complete(found, before, expected), f"{where}: partial state {found} (before: {before})"
            committed.append(point)
            remove_last_upload(engine, settings, found)
            before = holdings(engine, patient)
        elif not point.landed:
            msg = f"{where}: the import ended ({point.stderr.strip()}) and stored nothing"
            raise AssertionError(msg)
        raw_left.append(len(raw_leftovers(engine, patient)))

    points = kill_during(
        _import(import_export, PATIENT), moments, verify, env=victim_env, scratch=tmp_path, launcher=forks
    )
    landed = [p for p in points if p.landed]
    print(  # noqa: T201
        f"{len(landed)} of {KILLS} kills landed while the import ran; {len(committed)} after its commit; "
        f"raw files left without an upload after each kill: {raw_left}"
    )
    assert len(landed) >= KILLS // 2, f"seed {seed}: most kills must land while the import runs"
    # Not a test that cannot fail: kills must land in the transaction (a third at least, whatever the load).
    assert len(landed) - len(committed) >= KILLS // 3, f"seed {seed}: too few kills before the commit"

    # Tried again with the installed command: exactly the uninterrupted import's outcome.
    program = Path(sys.executable).with_name("glucoshare")
    retry = subprocess.run(
        [str(program), *_import(import_export, PATIENT)[1:]],
        env=victim_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert retry.returncode == 0, retry.stderr
    assert Outcome.of_json(retry.stdout) == expected
    stored = holdings(engine, patient)
    assert len(stored.uploads) == len(before.uploads) + 1
    assert stored.records == expected.new
    assert stored.devices == 1
    assert raw_file_of(engine, stored.uploads[-1][0]) == import_export.read_bytes()
    assert_sound(engine)

    again = forks.start(
        _import(import_export, PATIENT), victim_env, tmp_path / "again.out", tmp_path / "again.err"
    )
    assert again.wait(120) == 0, (tmp_path / "again.err").read_text()
    second = Outcome.of_json((tmp_path / "again.out").read_text())
    assert (second.new, second.duplicates, second.counts) == (
        0,
        expected.new + expected.duplicates,
        expected.counts,
    )
    assert holdings(engine, patient).records == expected.new
    assert_sound(engine)
