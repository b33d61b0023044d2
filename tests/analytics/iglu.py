"""iglu's example data and iglu 4.3.0's results, read in place from the iglu-python 0.4.3 sdist.

``make test`` downloads the sdist into ``.oracles/`` (it is GPL: nothing of it is copied into the
project). Its ``tests/expected_results.json`` holds R iglu 4.3.0's output (local time zone
Asia/Jerusalem) for every iglu function on the example data; these tests hold our analytics to it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import json
import os
import tarfile
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

SDIST = Path(__file__).resolve().parents[2] / ".oracles" / "iglu_python-0.4.3.tar.gz"
SHA256 = "7ece97cd50fbf0eae95572c830908225cbfecc37d2ef4475a8cf02d3462bf4dd"
ZONE = zoneinfo.ZoneInfo("Asia/Jerusalem")  # the zone the reference results were computed in
_EPOCH = dt.datetime(1970, 1, 1)


@dataclasses.dataclass(frozen=True)
class Subject:
    """One subject of an example file: readings in file order."""

    name: str
    local: list[dt.datetime]  # wall times in Asia/Jerusalem, as in the file
    gl: npt.NDArray[np.float64]  # mg/dL

    @property
    def local_ms(self) -> npt.NDArray[np.int64]:
        return np.array([(t - _EPOCH) // dt.timedelta(milliseconds=1) for t in self.local], np.int64)

    @property
    def utc_ms(self) -> npt.NDArray[np.int64]:
        return np.array([int(t.replace(tzinfo=ZONE).timestamp() * 1000) for t in self.local], np.int64)


def require() -> None:
    """Skip (or, under CI, fail) when the reference data is missing or not the pinned file."""
    reason = None
    if not SDIST.exists():
        reason = f"{SDIST} is missing (make test downloads it)"
    elif hashlib.sha256(SDIST.read_bytes()).hexdigest() != SHA256:
        reason = f"{SDIST} is not the pinned iglu-python 0.4.3 sdist"
    if reason is None:
        return
    if os.environ.get("GLUCOSHARE_TEST_REQUIRE_ORACLES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@functools.cache
def _member(name: str) -> bytes:
    with tarfile.open(SDIST) as archive:
        handle = archive.extractfile(f"iglu_python-0.4.3/{name}")
        assert handle is not None
        return handle.read()


@functools.cache
def subjects(file: str = "example_data_5_subject.csv") -> dict[str, Subject]:
    """The subjects of one example file, by id."""
    require()
    rows = csv.DictReader(io.StringIO(_member(f"tests/data/{file}").decode()))
    times: dict[str, list[dt.datetime]] = {}
    values: dict[str, list[float]] = {}
    for row in rows:
        times.setdefault(row["id"], []).append(dt.datetime.fromisoformat(row["time"]))
        values.setdefault(row["id"], []).append(float(row["gl"]))
    return {name: Subject(name, times[name], np.array(values[name], np.float64)) for name in times}


@functools.cache
def _runs() -> list[dict[str, Any]]:
    require()
    runs: list[dict[str, Any]] = json.loads(_member("tests/expected_results.json"))["test_runs"]
    return runs


def expected(method: str, file: str = "example_data_5_subject.csv", **kwargs: object) -> dict[str, Any]:
    """iglu 4.3.0's result of ``method(file, **kwargs)``: a column name → {row: value} mapping."""
    for run in _runs():
        if run["method"] == method and run["input_file_name"].endswith(file) and run["kwargs"] == kwargs:
            result: dict[str, Any] = run["results"]
            return result
    msg = f"no reference result for {method}({file}, {kwargs})"
    raise KeyError(msg)


def per_subject(
    method: str, column: str, file: str = "example_data_5_subject.csv", **kwargs: object
) -> dict[str, float]:
    """One result column by subject id."""
    result = expected(method, file, **kwargs)
    return {result["id"][row]: value for row, value in result[column].items()}
