"""A stray line break in any row of a CSV export the csv module splits refuses the file, naming the line.

The importers that read their rows with :func:`csv.reader` and refuse a file the csv module cannot
split go through :func:`glucoshare.ingest.base.checked_rows`: one error, one message, whatever the
vendor. (The importers that reject such a row and read on, like mySugr's or the generic CSV, are
tested with their own formats.)
"""

from __future__ import annotations

import datetime as dt
import functools

import pytest

from glucoshare.ingest.base import ParseContext, SourceText, each_record
from glucoshare.ingest.decoding import decode_text
from glucoshare.ingest.errors import MalformedFileError
from glucoshare.ingest.registry import detect_format
from glucoshare.simulator import simulate
from glucoshare.simulator.writers.base import WrittenExport
from glucoshare.simulator.writers.carelink import write_carelink
from glucoshare.simulator.writers.dexcom_clarity import write_clarity
from glucoshare.simulator.writers.tandem import write_tandem_source, write_tconnect
from tests.ingest.helpers import profile

START = dt.date(2025, 6, 1)
TANDEM_SOURCE_FILES = ("CGM", "BG", "Bolus", "Basal-doses", "Hourly-basal-delivery")


@functools.cache
def _exports() -> dict[str, tuple[str, WrittenExport]]:
    """Every layout under test: (its format, a simulated file of it)."""
    cgm = simulate(profile(seed=2), start=START, days=1)
    medtronic = simulate(profile(seed=2, therapy="pump", cgm="guardian4"), start=START, days=1)
    tandem = simulate(profile(seed=3, therapy="pump"), start=START, days=1)
    source = write_tandem_source(tandem)
    exports = {
        "dexcom_clarity": ("dexcom_clarity", write_clarity(cgm)),
        "carelink": ("carelink", write_carelink(medtronic)),
        "tandem_tconnect": ("tandem_tconnect", write_tconnect(tandem).file),
    }
    for kind in TANDEM_SOURCE_FILES:
        exports[f"tandem_source {kind}"] = ("tandem_source", source.file(kind))
    return exports


def _damaged(text: str, where: str) -> tuple[str, int]:
    """``text`` with a carriage return put before the first delimiter of one row; and that row's line.

    ``where`` picks the first, the middle or the last row of cells (a line with 3 delimiters or
    more after line 1). A lone carriage return ends a record for the csv module, which then finds
    the rest of the line where no field may start.
    """
    lines = text.split("\n")
    delimiter = ";" if lines[-2].count(";") > lines[-2].count(",") else ","
    rows = [at for at in range(1, len(lines)) if lines[at].count(delimiter) >= 3]
    at = {"first": rows[0], "middle": rows[len(rows) // 2], "last": rows[-1]}[where]
    cut = lines[at].index(delimiter)
    lines[at] = lines[at][:cut] + "\r" + lines[at][cut:]
    return "\n".join(lines), at + 1


@pytest.mark.parametrize("where", ["first", "middle", "last"])
@pytest.mark.parametrize(
    "layout",
    ["dexcom_clarity", "carelink", "tandem_tconnect"] + [f"tandem_source {k}" for k in TANDEM_SOURCE_FILES],
)
def test_a_stray_line_break_in_a_row_refuses_the_file_naming_its_line(layout: str, where: str) -> None:
    fmt, export = _exports()[layout]
    text, line = _damaged(decode_text(export.data, export.file_name).text, where)
    source = SourceText(export.file_name, text, "utf-8")
    importer = detect_format(source)
    assert importer.format == fmt
    message = f"{export.file_name}: line {line}: a field holds a stray line break or quote (a damaged file?)"
    with pytest.raises(MalformedFileError) as refused:
        list(each_record(importer.parse(source, ParseContext("Europe/Berlin")).records))
    assert refused.value.message == message


@pytest.mark.parametrize("layout", ["dexcom_clarity", "carelink", "tandem_tconnect", "tandem_source CGM"])
def test_the_undamaged_files_are_read(layout: str) -> None:
    fmt, export = _exports()[layout]
    source = SourceText(export.file_name, decode_text(export.data, export.file_name).text, "utf-8")
    importer = detect_format(source)
    assert importer.format == fmt
    result = importer.parse(source, ParseContext("Europe/Berlin"))
    assert list(each_record(result.records))
    assert result.rejected == []
