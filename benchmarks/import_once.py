"""Import one file into a fresh database and report time and peak memory as JSON (one process each).

Used by ``benchmarks/run.py``; run by hand as
``python benchmarks/import_once.py --url sqlite:////tmp/b.db --file F --warmup W --timezone
Europe/Berlin``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.ingest.registry import importers
from glucoshare.ingest.schemas import IncomingFile
from glucoshare.ingest.service import import_files
from glucoshare.vault.keyfile import load_or_create


def _peak_rss_kib() -> int:
    """This process's peak resident memory.

    ``VmHWM`` belongs to this program's own address space; ``getrusage`` would also count the
    parent's memory copied at ``fork``, which Linux carries over ``exec``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _pss_kib(pid: str) -> int:
    """A process's proportional set size: its private pages, and its share of pages it shares."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:  # the process has ended
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _children() -> list[str]:
    found: list[str] = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            found += (task / "children").read_text().split()
    return found


@contextlib.contextmanager
def pss_sampled(peak: list[int]) -> Iterator[None]:
    """Sample this process's and its children's proportional set sizes every 5 ms; the highest sum
    goes to ``peak[0]`` (KiB). Pages shared by the import and its parse process (ingest.parse_process)
    count once in the sum. The sampling costs time: only in a run that is not timed.

    The two processes cannot be read at one instant. While a child exits, its pages pass to this
    process (whose share grows) as they leave the child, and a sum of two readings taken a moment
    apart could count them twice; so the children are read before and after this process, and a
    sample in which they changed by more than 2 MiB is left out. An exit only frees memory: the
    samples before it hold the peak.
    """
    done = threading.Event()

    def children_kib() -> int:
        return sum(_pss_kib(pid) for pid in _children())

    def sample() -> None:
        while not done.wait(0.005):
            before = children_kib()
            own = _pss_kib("self")
            after = children_kib()
            if abs(after - before) <= _STEADY_KIB:
                peak[0] = max(peak[0], own + after)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        done.set()
        sampler.join()


_STEADY_KIB = 2048
"""How much the children's memory may change across one sample for the sample to count."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--warmup", type=Path, help="a small file of another device, imported first")
    parser.add_argument("--timezone", default="Europe/Berlin")
    parser.add_argument(
        "--sample-memory",
        action="store_true",
        help="sample the memory of this process and its parse process (slows the import down)",
    )
    args = parser.parse_args()
    pss_peak = [0]
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(database_url=args.url, data_dir=Path(data_dir))
        engine = create_db_engine(args.url, keyring=load_or_create(settings.effective_secret_key_file))
        upgrade(engine)
        with session_scope(engine) as session:
            patient = add_patient(
                session, validate_patient(email="bench@example.org", name="Bench", timezone=args.timezone)
            )
            other = add_patient(
                session, validate_patient(email="warm@example.org", name="Warm", timezone=args.timezone)
            )
        importers()  # load the importer plugins once, as a running server has (process start-up)
        if args.warmup is not None:
            # A running server has imported before: its SQL statements are compiled and cached.
            with session_scope(engine) as session:
                import_files(
                    session,
                    settings=settings,
                    patient=other,
                    files=[IncomingFile(args.warmup.name, args.warmup.read_bytes())],
                    timezone=None,
                    actor="benchmark",
                )
        start = time.perf_counter()
        data = args.file.read_bytes()
        sampled = pss_sampled(pss_peak) if args.sample_memory else contextlib.nullcontext()
        with sampled, session_scope(engine) as session:
            uploads = import_files(  # one upload, or one per member of a zip archive
                session,
                settings=settings,
                patient=patient,
                files=[IncomingFile(args.file.name, data)],
                timezone=None,
                actor="benchmark",
            )
        seconds = time.perf_counter() - start
    engine.dispose()
    peak_kib = _peak_rss_kib()
    # The parse process (ingest.parse_process), reaped by now; its peak counts the pages it shares
    # with this process (the decoded file) as its own too.
    child_kib = int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    sampled = {"peak_pss_both_mb": pss_peak[0] / 1024} if args.sample_memory else {}
    print(
        json.dumps(
            {
                **sampled,
                "seconds": seconds,
                "records": sum(sum(u.counts.values()) for u in uploads),
                "readings": sum(u.counts.get("cbg", 0) for u in uploads),
                "new": sum(u.new for u in uploads),
                "peak_rss_mb": peak_kib / 1024,
                "parse_process_peak_rss_mb": child_kib / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
