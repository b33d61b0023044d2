"""WAL checkpoints run on their own thread, not inside the commit that crosses the threshold."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from glucoshare.db.checkpoint import (
    CHECKPOINTER,
    Checkpointer,
    checkpoint,
    checkpoint_off_the_commit,
)
from glucoshare.db.session import create_db_engine

PAGE = 4096  # SQLite's default page size: a row of _fill takes a page of its own
PAGES = 1200  # more than SQLite's automatic checkpoint lets into the log (1,000 pages)


def _in_database_file(path: Path) -> int:
    """Pages the database file itself holds (the log not counted).

    Only looked at with ``stat``: opening and closing a database's files would drop the POSIX
    locks SQLite holds on them in this process.
    """
    return path.stat().st_size // PAGE


class CountingCheckpointer(Checkpointer):
    """Checkpoints as the process's own does, and counts them."""

    def __init__(self, min_interval_s: float) -> None:
        super().__init__(min_interval_s=min_interval_s)
        self.runs = 0

    def run_checkpoint(self, database: Path) -> None:
        self.runs += 1
        super().run_checkpoint(database)


class RecordingCheckpointer(Checkpointer):
    """Notes the requests and checkpoints nothing, so that a test sees the log as commits left it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Path] = []

    def request(self, database: Path) -> None:
        self.requests.append(database)


def _fill(engine: Engine, pages: int) -> None:
    """Commit about ``pages`` pages of new rows in one transaction."""
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS filler (b BLOB)"))
        conn.execute(
            sa.text("INSERT INTO filler VALUES (:b)"),
            [{"b": bytes([n % 251]) * (PAGE - 200)} for n in range(pages)],
        )


def _recording_engine(path: Path) -> tuple[Engine, RecordingCheckpointer]:
    recorder = RecordingCheckpointer()
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(engine, "connect", lambda conn, _record: conn.execute("PRAGMA journal_mode=WAL"))
    checkpoint_off_the_commit(engine, path, recorder)
    return engine, recorder


def test_a_large_commit_leaves_its_pages_in_the_log_and_asks_for_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    engine, recorder = _recording_engine(path)
    try:
        _fill(engine, PAGES)
        # SQLite's own checkpoint would have copied the pages into the file within the commit.
        assert _in_database_file(path) < 10
        assert Path(f"{path}-wal").stat().st_size > PAGES * PAGE
        assert recorder.requests == [path]  # asked once the transaction ended
        checkpoint(path, timeout_s=5)
        assert _in_database_file(path) >= PAGES
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM filler")).scalar() == PAGES
    finally:
        engine.dispose()


def test_a_read_asks_for_nothing(tmp_path: Path) -> None:
    path = tmp_path / "read.db"
    engine, recorder = _recording_engine(path)
    try:
        _fill(engine, 1)
        recorder.requests.clear()
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT count(*) FROM filler")).scalar()
        assert recorder.requests == []
    finally:
        engine.dispose()


def test_the_thread_checkpoints_after_the_commit(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    engine = create_db_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        _fill(engine, PAGES)
        assert CHECKPOINTER.wait_idle(30)
        assert _in_database_file(path) >= PAGES
    finally:
        engine.dispose()


def test_many_small_commits_share_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    counter = CountingCheckpointer(min_interval_s=0.5)
    engine = sa.create_engine(f"sqlite:///{path}")
    sa.event.listen(engine, "connect", lambda conn, _record: conn.execute("PRAGMA journal_mode=WAL"))
    checkpoint_off_the_commit(engine, path, counter)
    try:
        started = time.monotonic()
        for _ in range(40):
            _fill(engine, 1)
        elapsed = time.monotonic() - started
        assert counter.wait_idle(30)
        # The first commit's checkpoint at once, then at most one per interval.
        assert 1 <= counter.runs <= 2 + elapsed / counter.min_interval_s < 40
        assert _in_database_file(path) >= 40  # and the last commit is in the file too
    finally:
        engine.dispose()


def test_a_committed_transaction_survives_a_crash_before_its_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        import sqlalchemy as sa
        from glucoshare.db.checkpoint import checkpoint_off_the_commit, Checkpointer

        class Never(Checkpointer):
            def request(self, database):
                pass

        path = Path({str(path)!r})
        engine = sa.create_engine(f"sqlite:///{{path}}")
        sa.event.listen(engine, "connect", lambda c, r: c.execute("PRAGMA journal_mode=WAL"))
        checkpoint_off_the_commit(engine, path, Never())
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:n)"), [{{"n": n}} for n in range(50_000)])
        os._exit(0)  # no close, no checkpoint: the rows are only in the log
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert Path(f"{path}-wal").stat().st_size > 0
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*), sum(n) FROM t")).one() == (
                50_000,
                sum(range(50_000)),
            )
    finally:
        engine.dispose()


def test_a_checkpoint_of_a_removed_database_creates_nothing_and_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "patient-jane-doe.db"
    with caplog.at_level(logging.DEBUG, logger="glucoshare.db.checkpoint"):
        checkpoint(path, timeout_s=1)
    assert not path.exists()
    assert caplog.text == ""


def test_a_failed_checkpoint_is_logged_without_the_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "patient-jane-doe.db"
    path.write_bytes(b"this is not a database file, but it is long enough to be read as one" * 100)
    with caplog.at_level(logging.WARNING, logger="glucoshare.db.checkpoint"):
        checkpoint(path, timeout_s=1)
    assert "WAL checkpoint failed (DatabaseError)" in caplog.text
    assert "jane" not in caplog.text


def test_a_forked_child_runs_checkpoints_of_its_own(tmp_path: Path) -> None:
    parent_db, child_db = tmp_path / "parent.db", tmp_path / "child.db"
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        import sqlalchemy as sa
        from glucoshare.db.checkpoint import CHECKPOINTER
        from glucoshare.db.session import create_db_engine

        def fill(path, pages):
            engine = create_db_engine(f"sqlite:///{{path}}")
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE filler (b BLOB)"))
                conn.execute(
                    sa.text("INSERT INTO filler VALUES (:b)"), [{{"b": b"x" * 3900}}] * pages
                )
            return engine

        parent = fill(Path({str(parent_db)!r}), 3)  # the parent's thread is running now
        pid = os.fork()
        if pid == 0:
            child = fill(Path({str(child_db)!r}), {PAGES})
            done = CHECKPOINTER.wait_idle(30) and Path({str(child_db)!r}).stat().st_size >= {PAGES * PAGE}
            os._exit(0 if done else 3)
        _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    assert done.returncode == 0


def test_a_process_that_ends_leaves_its_pages_in_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    with contextlib.closing(sqlite3.connect(path)) as keeper:
        # Another process has the database open, as a server would: SQLite's checkpoint at the
        # close of the last connection does not happen, only this module's.
        keeper.execute("PRAGMA journal_mode=WAL")
        keeper.execute("CREATE TABLE filler (b BLOB)")
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            import sqlalchemy as sa
            from glucoshare.db.session import create_db_engine

            engine = create_db_engine(f"sqlite:///{{Path({str(path)!r})}}")
            for pages in (10, {PAGES}):  # the second commit's checkpoint waits for the interval
                with engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO filler VALUES (:b)"), [{{"b": b"x" * 3900}}] * pages)
            """
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
        assert _in_database_file(path) >= PAGES + 10
