"""Import one file into a fresh database and report time and peak memory as JSON (one process each).

Used by ``benchmarks/run.py``; run by hand as
``python benchmarks/import_once.py --url sqlite:////tmp/b.db --file F --warmup W --timezone
Europe/Berlin``.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--warmup", type=Path, help="a small file of another device, imported first")
    parser.add_argument("--timezone", default="Europe/Berlin")
    args = parser.parse_args()
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
        with session_scope(engine) as session:
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
    print(
        json.dumps(
            {
                "seconds": seconds,
                "records": sum(sum(u.counts.values()) for u in uploads),
                "readings": sum(u.counts.get("cbg", 0) for u in uploads),
                "new": sum(u.new for u in uploads),
                "peak_rss_mb": peak_kib / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
