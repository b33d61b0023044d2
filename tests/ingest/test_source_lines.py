"""The lines an importer reads: only a line feed ends a line, whatever else the text holds."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from glucoshare.ingest import base
from glucoshare.ingest.base import SourceText


def _by_line_feed(text: str) -> list[str]:
    """Every line with its line feed (the last without one, if the text does not end with one)."""
    lines, start = [], 0
    while start < len(text):
        stop = text.find("\n", start)
        stop = len(text) if stop < 0 else stop + 1
        lines.append(text[start:stop])
        start = stop
    return lines


@settings(max_examples=300)
@example(text="a\x1cb\n", slice_chars=12)  # an odd line break in a slice that ends with a line feed
@example(text="a\u2028b", slice_chars=12)
@given(
    text=st.text(
        alphabet=st.sampled_from(list('ab,;"\n\r\x1c\x1d\x1e\x85\u2028\u2029\x0b\x0c ')), max_size=60
    ),
    slice_chars=st.integers(1, 12),
)
def test_lines_are_the_text_cut_after_each_line_feed(text: str, slice_chars: int) -> None:
    """Read in slices of a few characters (1 MB in production): the same lines as one cut."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(base, "_LINES_CHUNK", slice_chars)
        lines = list(SourceText("t.csv", text, "utf-8").lines())
    assert lines == _by_line_feed(text)
    assert "".join(lines) == text
