"""The cells of a *plain* CSV text as NumPy columns, for an importer's hot path.

A plain text holds no quote character and no NUL, ends a line only with a line feed (a carriage
return only just before one), has lines shorter than the csv module's field limit, and holds the
same number of delimiters on every line. Each line is then one row and each cell the bytes between
two delimiters, exactly as :func:`csv.reader` reads them, and the text can be cut into columns
without a Python step per row. An importer reads each *distinct* text of a column once
(:func:`distinct_texts`): a CGM export of a year has about 100,000 rows but a few hundred distinct
dates, times and values.
"""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import numpy.typing as npt

_LINE_FEED, _CARRIAGE_RETURN, _QUOTE, _NUL, _SPACE = 10, 13, 34, 0, 32
_WORD = 8
"""Bytes per packed word (:func:`distinct_texts`)."""

Offsets = npt.NDArray[np.intp]


@dataclasses.dataclass(frozen=True, slots=True)
class PlainRows:
    """A plain text's rows: where each cell of each row starts and ends in :attr:`data`."""

    data: npt.NDArray[np.uint8]
    """The UTF-8 bytes of the rows."""
    starts: Offsets
    """``(rows, cells)``: the offset of each cell's first byte."""
    ends: Offsets
    """``(rows, cells)``: the offset just past each cell's last byte."""
    windows: npt.NDArray[np.uint64]
    """At each offset of :attr:`data` and just past its end, the 8 bytes from there as one
    little-endian word (a view of overlapping, unaligned words; NUL past the end)."""

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def line(self, row: int) -> str:
        """The text of one row (its line without the line break)."""
        return self.text(int(self.starts[row, 0]), int(self.ends[row, -1]))

    def text(self, start: int, end: int) -> str:
        """The text of the bytes from ``start`` to ``end``."""
        return self.data[start:end].tobytes().decode()


def plain_rows(data: bytes, delimiter: str, cells: int) -> PlainRows | None:
    """The rows of ``data`` (UTF-8, after any header), ``None`` unless the text is plain (see above).

    ``cells``: how many cells every row must have. The last line may lack its line break.
    """
    if not data or len(delimiter) != 1 or cells < 1:
        return None
    raw = np.frombuffer(data, np.uint8)
    if (raw == _QUOTE).any() or (raw == _NUL).any():
        return None
    breaks = np.flatnonzero(raw == _LINE_FEED)
    line_ends = breaks if raw[-1] == _LINE_FEED else np.append(breaks, raw.size)
    line_starts = np.empty_like(line_ends)
    line_starts[0] = 0
    line_starts[1:] = line_ends[:-1] + 1
    returns = np.flatnonzero(raw == _CARRIAGE_RETURN)
    if returns.size:
        if returns[-1] + 1 >= raw.size or (raw[returns + 1] != _LINE_FEED).any():
            return None  # a carriage return inside a line: the csv module reads it as a line break
        line_ends = line_ends - (raw[np.maximum(line_ends - 1, 0)] == _CARRIAGE_RETURN)
    lengths = line_ends - line_starts
    if not lengths.all() or int(lengths.max()) >= csv.field_size_limit():
        return None  # a blank line (the csv module gives no cells), or a cell too long for it
    separators = np.flatnonzero(raw == ord(delimiter))
    per_line = np.searchsorted(separators, line_ends) - np.searchsorted(separators, line_starts)
    if (per_line != cells - 1).any():
        return None
    inner = separators.reshape(line_ends.size, cells - 1)
    starts = np.empty((line_ends.size, cells), np.intp)
    ends = np.empty((line_ends.size, cells), np.intp)
    starts[:, 0] = line_starts
    starts[:, 1:] = inner + 1
    ends[:, :-1] = inner
    ends[:, -1] = line_ends
    padded = np.concatenate([raw, np.zeros(_WORD, np.uint8)])
    windows = np.ndarray((raw.size + 1,), np.dtype("<u8"), padded, 0, (1,))
    return PlainRows(raw, starts, ends, windows)


def first_space(rows: PlainRows, starts: Offsets, ends: Offsets) -> Offsets | None:
    """The offset of the first space in each cell from ``starts`` to ``ends``; ``None`` if one has none."""
    spaces = np.flatnonzero(rows.data == _SPACE)
    if not spaces.size:
        return None
    at = np.searchsorted(spaces, starts)
    found = spaces[np.minimum(at, spaces.size - 1)]
    if ((at >= spaces.size) | (found >= ends)).any():
        return None
    return found.astype(np.intp)


def distinct_texts(
    rows: PlainRows, starts: Offsets, ends: Offsets, *, first: bool = False
) -> tuple[list[str], Offsets, Offsets | None]:
    """The distinct texts of the cells from ``starts`` to ``ends`` (one per row, in a given order).

    Returns ``(texts, inverse, firsts)``: ``texts[inverse[i]]`` is the text of cell ``i``, and with
    ``first``, ``firsts[k]`` is the first cell holding ``texts[k]`` (else ``None``). Cells of up to
    8 bytes are compared as one packed integer each; longer ones (dates, serial numbers) by runs of
    equal neighbours, as an export sorted by time repeats them row after row.
    """
    count = starts.size
    if not count:
        return [], np.zeros(0, np.intp), np.zeros(0, np.intp) if first else None
    lengths = ends - starts
    words = _packed(rows, starts, lengths, max(1, -(-int(lengths.max()) // _WORD)))
    if len(words) == 1:
        if first:
            keys, at, inverse = np.unique(words[0], return_index=True, return_inverse=True)
        else:
            keys, inverse = np.unique(words[0], return_inverse=True)
            at = np.zeros(keys.size, np.intp)
            at[inverse[::-1]] = np.arange(count - 1, -1, -1)  # a cell of each text
        texts = [rows.text(int(starts[k]), int(ends[k])) for k in at.tolist()]
        return texts, inverse.astype(np.intp).ravel(), at.astype(np.intp) if first else None
    changes = np.zeros(count, np.bool_)
    changes[0] = True
    for word in words:
        changes[1:] |= word[1:] != word[:-1]
    run_starts = np.flatnonzero(changes)
    index: dict[str, int] = {}
    firsts: list[int] = []
    run_ids: list[int] = []
    for run_start in run_starts.tolist():
        text = rows.text(int(starts[run_start]), int(ends[run_start]))
        found = index.get(text)
        if found is None:
            found = index[text] = len(firsts)
            firsts.append(run_start)
        run_ids.append(found)
    inverse = np.repeat(np.array(run_ids, np.intp), np.diff(np.append(run_starts, count)))
    return list(index), inverse, np.array(firsts, np.intp) if first else None


def small_distinct(keys: Offsets) -> tuple[Offsets, Offsets]:
    """``(distinct, inverse)`` of small non-negative integers, ascending, without sorting."""
    if not keys.size:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    present = np.zeros(int(keys.max()) + 1, np.bool_)
    present[keys] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present).astype(np.intp), rank[keys].astype(np.intp)


_MASKS = np.array([(1 << (8 * size)) - 1 for size in range(_WORD)] + [(1 << 64) - 1], np.uint64)
"""Of each length 0 to 8, the mask keeping that many low bytes of a little-endian word."""


def _packed(rows: PlainRows, starts: Offsets, lengths: Offsets, count: int) -> list[npt.NDArray[np.uint64]]:
    """Each cell's bytes as ``count`` little-endian 64-bit words, padded with NUL (never in a plain text)."""
    windows = rows.windows
    words = []
    for word in range(count):
        offset = word * _WORD
        packed = windows[np.minimum(starts + offset, rows.data.size)].astype(np.uint64)
        packed &= _MASKS[np.clip(lengths - offset, 0, _WORD)]
        words.append(packed)
    return words
