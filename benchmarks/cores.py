"""How much work the machine's second core adds: one Python workload alone, then two at once.

An import on SQLite parses in a child process while the importing process stores
(``glucoshare.ingest.parse_process``), so its time depends on how much the two cores give when both
are busy. On a shared virtual machine two virtual cores may be two threads of one physical core, or
share it with other machines, and then each runs slower while the other works. Used by
``benchmarks/run.py``; run by hand as ``python benchmarks/cores.py``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import multiprocessing
import statistics
import time
from multiprocessing.synchronize import Barrier

_ROWS = 100_000
_ROUNDS = 11


def _text() -> str:
    """A CSV text like a CGM export's rows: a timestamp, a glucose value and a serial number."""
    lines = [
        f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d},{40 + i % 360},G6-{i % 7}\n"
        for i in range(_ROWS)
    ]
    return "".join(lines)


def _workload(text: str) -> float:
    """Seconds to read the rows and convert their values: Python code, as a parser runs."""
    start = time.perf_counter()
    total = 0.0
    for _ in range(3):
        for stamp, value, serial in csv.reader(io.StringIO(text)):
            total += float(value) + len(stamp) + len(serial)
    if total < 0:  # keeps the loop's result in use
        raise AssertionError
    return time.perf_counter() - start


def _at_once(text: str, barrier: Barrier, out: multiprocessing.SimpleQueue[float]) -> None:
    barrier.wait()
    out.put(_workload(text))


@dataclasses.dataclass(frozen=True, slots=True)
class CoreMeasurement:
    """The same workload alone and two at once, each the median of its rounds."""

    alone_seconds: float
    both_seconds: float
    """Two processes running it at the same time: the slower of the two, per round."""

    @property
    def slowdown(self) -> float:
        """How much longer the workload takes while another runs beside it."""
        return self.both_seconds / self.alone_seconds

    @property
    def throughput(self) -> float:
        """The work two busy cores do, as a multiple of one core's (2 on two free cores)."""
        return 2 / self.slowdown


def run() -> CoreMeasurement:
    """Measure, alternating alone and two at once so that the machine's drift cancels out."""
    text = _text()
    context = multiprocessing.get_context("fork")
    alone: list[float] = []
    both: list[float] = []
    for _ in range(_ROUNDS):
        alone.append(_workload(text))
        barrier = context.Barrier(2)
        out: multiprocessing.SimpleQueue[float] = context.SimpleQueue()
        workers = [context.Process(target=_at_once, args=(text, barrier, out)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        both.append(max(out.get(), out.get()))
    return CoreMeasurement(statistics.median(alone), statistics.median(both))


def report_line(measured: CoreMeasurement) -> str:
    """The Machine section's line for the measurement."""
    return (
        f"two cores at work: one Python workload takes {measured.alone_seconds:.3f} s alone and "
        f"{measured.both_seconds:.3f} s while a second runs beside it ({measured.slowdown:.2f}x as long; "
        f"`benchmarks/cores.py`, medians of {_ROUNDS}), so two busy cores do {measured.throughput:.2f}x "
        "the work of one"
    )


if __name__ == "__main__":
    measured = run()
    print(json.dumps({**dataclasses.asdict(measured), "slowdown": measured.slowdown}))
