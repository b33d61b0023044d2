"""Files kept in the database (``sealed_files``): sealed per subject and place, in the transaction."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Engine, delete, func, select

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.db.session import session_scope
from glucoshare.vault.errors import SealBrokenError
from glucoshare.vault.models import PIECE_BYTES, SealedFile, SealedFilePiece
from glucoshare.vault.service import open_file, remove_file, remove_files_of, seal_file
from tests.kept import kept_places, sealed_bytes

DATA = b"Index,Timestamp (YYYY-MM-DDThh:mm:ss)\n" * 1000


def _patient(engine: Engine, email: str = "kept@example.org") -> str:
    with session_scope(engine) as session:
        return add_patient(session, validate_patient(email=email, name="Kept")).id


def test_a_kept_file_is_sealed_opens_and_goes_with_its_transaction(engine: Engine) -> None:
    patient = _patient(engine)
    place = f"raw:{patient}:abc"
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        seal_file(session, patient, DATA, place)
        raise RuntimeError  # rolled back: nothing kept
    assert kept_places(engine) == set()
    with session_scope(engine) as session:
        seal_file(session, patient, DATA, place)
        seal_file(session, patient, b"the same place names the same content", place)  # kept as it is
    with session_scope(engine) as session:
        sealed = sealed_bytes(session, place)
        assert sealed is not None
        assert DATA[:40] not in sealed
        assert open_file(session, patient, place) == DATA
        assert open_file(session, patient, f"raw:{patient}:other") is None
        remove_file(session, place)
    assert kept_places(engine) == set()


def test_a_file_copied_to_another_place_does_not_open(engine: Engine) -> None:
    """The place is the sealing's associated data: pieces copied under another place are refused."""
    patient = _patient(engine)
    one, two = f"raw:{patient}:one", f"raw:{patient}:two"
    with session_scope(engine) as session:
        seal_file(session, patient, DATA, one)
        session.add(SealedFile(place=two, subject_id=patient, size_bytes=len(DATA)))
        session.flush()
        for number, data in session.execute(
            select(SealedFilePiece.number, SealedFilePiece.data).where(SealedFilePiece.place == one)
        ):
            session.add(SealedFilePiece(place=two, number=number, data=data))
    with session_scope(engine) as session, pytest.raises(SealBrokenError):
        open_file(session, patient, two)


def test_a_large_file_is_kept_in_pieces_that_only_open_together_and_in_order(engine: Engine) -> None:
    """No piece holds more than PIECE_BYTES; a piece left out or two swapped: the file does not open."""
    patient = _patient(engine)
    place = f"raw:{patient}:large"
    large = bytes(range(256)) * (3 * PIECE_BYTES // 256 + 1000)  # a little over 3 pieces
    with session_scope(engine) as session:
        seal_file(session, patient, large, place)
    with session_scope(engine) as session:
        sizes = session.execute(
            select(SealedFilePiece.number, func.length(SealedFilePiece.data))
            .where(SealedFilePiece.place == place)
            .order_by(SealedFilePiece.number)
        ).all()
        assert [number for number, _ in sizes] == [0, 1, 2, 3]
        assert all(size == PIECE_BYTES for _, size in sizes[:-1])
        assert 0 < sizes[-1][1] < PIECE_BYTES
        assert open_file(session, patient, place) == large
    with session_scope(engine) as session:  # swap the first two pieces
        first, second = (
            session.scalars(
                select(SealedFilePiece).where(SealedFilePiece.place == place, SealedFilePiece.number == n)
            ).one()
            for n in (0, 1)
        )
        first.data, second.data = second.data, first.data
    with session_scope(engine) as session, pytest.raises(SealBrokenError):
        open_file(session, patient, place)
    with session_scope(engine) as session:  # pieces in order again, but one left out
        session.execute(
            delete(SealedFilePiece).where(SealedFilePiece.place == place, SealedFilePiece.number == 2)
        )
    with session_scope(engine) as session, pytest.raises(SealBrokenError):
        open_file(session, patient, place)


def test_an_empty_file_is_kept_and_opens_empty(engine: Engine) -> None:
    patient = _patient(engine)
    with session_scope(engine) as session:
        seal_file(session, patient, b"", f"raw:{patient}:empty")
    with session_scope(engine) as session:
        assert open_file(session, patient, f"raw:{patient}:empty") == b""


def test_removing_a_subjects_files_leaves_the_others(engine: Engine) -> None:
    first, second = _patient(engine), _patient(engine, "other@example.org")
    with session_scope(engine) as session:
        for subject in (first, second):
            seal_file(session, subject, DATA, f"raw:{subject}:a")
            seal_file(session, subject, DATA, f"raw:{subject}:b")
    with session_scope(engine) as session:
        assert remove_files_of(session, first) == 2
    assert kept_places(engine) == {f"raw:{second}:a", f"raw:{second}:b"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_same_file_kept_by_two_transactions_at_once_is_kept_once(engine: Engine) -> None:
    """The same export sent twice at once: the second waits for the first, then finds the file."""
    patient = _patient(engine)
    place = f"raw:{patient}:same"
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with session_scope(engine) as other:
                other.get(SealedFile, place)  # not there yet for this transaction
                seal_file(other, patient, DATA, place)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failures.append(exc)

    with session_scope(engine) as session:
        seal_file(session, patient, DATA, place)
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting on the first transaction's row
    thread.join(30)
    assert not thread.is_alive()
    assert failures == []
    assert kept_places(engine) == {place}
    with session_scope(engine) as session:
        assert open_file(session, patient, place) == DATA
