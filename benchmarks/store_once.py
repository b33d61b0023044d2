"""Store N plain CGM readings, with no file and no parsing, and report the time as JSON (one process).

The floor under every import: what the record writer alone takes for as many records as a file
holds, each the cheapest kind there is (a plain reading in a column block). Used by
``benchmarks/run.py``; run by hand as
``python benchmarks/store_once.py --url sqlite:////tmp/s.db --records 100000``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.devices.service import resolve_device
from glucoshare.records.models import Upload
from glucoshare.records.service import ReadingColumns, RecordWriter, dedup_key
from glucoshare.vault.keyfile import load_or_create

BLOCK = 4096
START_MS = 1_735_689_600_000  # 2025-01-01T00:00Z
STEP_MS = 300_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--records", required=True, type=int)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(database_url=args.url, data_dir=Path(data_dir))
        engine = create_db_engine(args.url, keyring=load_or_create(settings.effective_secret_key_file))
        upgrade(engine)
        with session_scope(engine) as session:
            patient = add_patient(session, validate_patient(email="store@example.org", name="Store"))
            device = resolve_device(
                session, patient_id=patient.id, manufacturer="Bench", model="CGM", serial="S1"
            )
            upload = Upload(
                patient_id=patient.id,
                file_name="bench",
                sha256="0" * 64,
                size_bytes=0,
                format="bench",
                encoding="utf-8",
                timezone="UTC",
                uploaded_by="bench",
            )
            session.add(upload)
            session.flush()
            device_seq, upload_seq = device.seq, upload.seq
        blocks = []
        for first in range(0, args.records, BLOCK):
            count = min(BLOCK, args.records - first)
            index = range(first, first + count)
            blocks.append(
                ReadingColumns(
                    device_seq=device_seq,
                    upload_seq=upload_seq,
                    type="cbg",
                    subtype="sensor",
                    orig_unit="mg/dL",
                    dedup_key=dedup_key("cbg", "sensor", None, ""),
                    time_ms=[START_MS + i * STEP_MS for i in index],
                    utc_offset_min=[0] * count,
                    value=[100.0 + i % 200 for i in index],
                    orig_value=[100.0 + i % 200 for i in index],
                    source_line=[i + 2 for i in index],
                )
            )
        start = time.perf_counter()
        with session_scope(engine) as session:
            writer = RecordWriter(session)
            for block in blocks:
                writer.write(block)
            stored = writer.new
        seconds = time.perf_counter() - start
    engine.dispose()
    print(json.dumps({"seconds": seconds, "records": stored}))


if __name__ == "__main__":
    main()
