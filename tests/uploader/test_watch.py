"""The folder watcher: a file is handed on once it stops changing, once per version, never a partial one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from glucoshare.uploader.watch import PARTIAL_SUFFIXES, FolderWatch, is_candidate, watch_folder


def test_a_file_is_ready_when_it_did_not_change_between_two_polls(tmp_path: Path) -> None:
    state = FolderWatch(tmp_path)
    export = tmp_path / "Clarity.csv"
    export.write_bytes(b"first part")
    assert state.poll() == []  # first seen
    export.write_bytes(b"first part, then more")
    assert state.poll() == []  # still growing
    assert state.poll() == [export]
    assert state.poll() == [export]  # until it is marked
    state.mark(export)
    assert state.poll() == []
    export.write_bytes(b"a new version of the export")
    os.utime(export, ns=(1, 1))
    assert state.poll() == []
    assert state.poll() == [export]


def test_hidden_partial_and_lock_files_and_links_are_ignored(tmp_path: Path) -> None:
    for name in ("a.csv.crdownload", "b.zip.part", "~$c.xlsx", ".hidden.csv", "d.CSV.PARTIAL"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "e.csv").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.csv").write_bytes(b"x")
    (tmp_path / "link.csv").symlink_to(tmp_path / "sub" / "f.csv")
    state = FolderWatch(tmp_path)
    state.poll()
    assert state.poll() == [tmp_path / "sub" / "f.csv"]


@given(st.text(alphabet="abcXYZ._-~$ ", min_size=1, max_size=15), st.sampled_from(PARTIAL_SUFFIXES))
def test_no_partial_download_is_a_candidate(stem: str, suffix: str) -> None:
    assert not is_candidate(Path(stem + suffix))
    assert not is_candidate(Path(stem + suffix.upper()))
    assert not is_candidate(Path("." + stem) / "export.csv")


def test_watch_polls_until_the_rounds_are_done_and_retries_what_failed(tmp_path: Path) -> None:
    (tmp_path / "one.csv").write_bytes(b"1")
    (tmp_path / "two.csv").write_bytes(b"2")
    handed: list[str] = []
    pauses: list[float] = []
    outcomes = iter([False, True, True])  # the server is away the first time

    def handle(path: Path) -> bool:
        handed.append(path.name)
        return next(outcomes)

    rounds = watch_folder(tmp_path, handle, interval_s=2.5, max_rounds=4, sleep=pauses.append)
    assert rounds == 4
    assert pauses == [2.5, 2.5, 2.5]
    assert handed == ["one.csv", "one.csv", "two.csv"]


def test_ctrl_c_ends_the_watch_cleanly(tmp_path: Path) -> None:
    def interrupted(_seconds: float) -> None:
        raise KeyboardInterrupt

    assert watch_folder(tmp_path, lambda _p: True, interval_s=1, sleep=interrupted) == 1


def test_a_file_removed_while_polling_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = tmp_path / "gone.csv"
    export.write_bytes(b"x")
    real_stat = Path.stat

    def stat(self: Path, **kwargs: bool) -> os.stat_result:
        if self.name == "gone.csv" and not kwargs:
            raise FileNotFoundError(self)
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    assert FolderWatch(tmp_path).poll() == []
