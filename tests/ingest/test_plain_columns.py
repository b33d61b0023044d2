"""Plain CSV texts cut into columns with NumPy read exactly as the csv module reads them."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glucoshare.ingest.plain_columns import distinct_texts, first_space, plain_rows, small_distinct

PIECES = [*"ab 1:.-ü€\t\r", "xyzxyzxyz"]
CELL = st.lists(st.sampled_from(PIECES), max_size=6).map("".join)
"""Cells of up to 8 bytes and longer (words of :func:`distinct_texts`), some not ASCII."""


def _csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline=""), strict=True))


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(CELL, min_size=3, max_size=3), min_size=1, max_size=20),
    newline=st.sampled_from(["\n", "\r\n"]),
    final=st.booleans(),
)
def test_the_cells_are_those_the_csv_module_reads(rows: list[list[str]], newline: str, final: bool) -> None:
    text = newline.join(",".join(row) for row in rows) + (newline if final else "")
    plain = plain_rows(text.encode(), ",", 3)
    if plain is None:  # only for a carriage return that does not end a line (the csv module's line break)
        assert re.search("\r(?!\n)", text)
        return
    read = [
        [plain.text(int(start), int(end)) for start, end in zip(starts, ends, strict=True)]
        for starts, ends in zip(plain.starts, plain.ends, strict=True)
    ]
    assert read == _csv_rows(text)
    assert [plain.line(row) for row in range(len(plain))] == [
        line.removesuffix("\r") for line in text.split("\n")[: len(plain)]
    ]


def test_a_text_of_plain_rows_is_recognised() -> None:
    plain = plain_rows(b"2025-06-01 08:00,120,G7\r\n2025-06-01 07:55,118,G7", ",", 3)
    assert plain is not None
    assert len(plain) == 2
    assert plain.line(1) == "2025-06-01 07:55,118,G7"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('a,"b",c\n', "a quote"),
        ("a,b\x00,c\n", "a NUL"),
        ("a,b,c\rd,e,f\n", "a carriage return inside a line"),
        ("a,b,c\r", "a carriage return at the end"),
        ("a,b,c\n\nd,e,f\n", "a blank line"),
        ("a,b,c\nd,e\n", "a row with a cell too few"),
        ("a,b,c,d\n", "a row with a cell too many"),
        ("", "nothing"),
    ],
)
def test_a_text_that_is_not_plain_is_left_to_the_csv_module(text: str, why: str) -> None:
    assert plain_rows(text.encode(), ",", 3) is None, why


def test_a_line_longer_than_the_csv_field_limit_is_left_to_the_csv_module() -> None:
    assert plain_rows(("a," + "b" * csv.field_size_limit() + ",c\n").encode(), ",", 3) is None


@settings(max_examples=300, deadline=None)
@given(cells=st.lists(CELL.filter(lambda cell: "\r" not in cell), min_size=1, max_size=40))
def test_distinct_texts_give_back_every_cell(cells: list[str]) -> None:
    text = "".join(f"x;{cell}\n" for cell in cells)
    plain = plain_rows(text.encode(), ";", 2)
    assert plain is not None
    texts, inverse, first = distinct_texts(plain, plain.starts[:, 1], plain.ends[:, 1], first=True)
    assert first is not None
    assert [texts[at] for at in inverse.tolist()] == cells
    assert sorted(texts) == sorted(set(cells))
    assert [cells.index(text) for text in texts] == first.tolist()
    reversed_texts, reversed_inverse, _ = distinct_texts(plain, plain.starts[::-1, 1], plain.ends[::-1, 1])
    assert [reversed_texts[at] for at in reversed_inverse.tolist()] == cells[::-1]


def test_first_space_of_each_cell() -> None:
    plain = plain_rows(b"2025-06-01 08:00,1\n01.06.2025  07:55,2\n", ",", 2)
    assert plain is not None
    spaces = first_space(plain, plain.starts[:, 0], plain.ends[:, 0])
    assert spaces is not None
    assert [plain.text(int(s), int(e)) for s, e in zip(plain.starts[:, 0], spaces, strict=True)] == [
        "2025-06-01",
        "01.06.2025",
    ]
    no_space = plain_rows(b"2025-06-01T08:00,1\n2025-06-01 07:55,2\n", ",", 2)
    assert no_space is not None
    assert first_space(no_space, no_space.starts[:, 0], no_space.ends[:, 0]) is None


@given(keys=st.lists(st.integers(min_value=0, max_value=50), max_size=30))
def test_small_distinct_is_numpys_unique(keys: list[int]) -> None:
    distinct, inverse = small_distinct(np.array(keys, np.intp))
    expected, expected_inverse = np.unique(np.array(keys, np.intp), return_inverse=True)
    assert distinct.tolist() == expected.tolist()
    assert inverse.tolist() == expected_inverse.ravel().tolist()
