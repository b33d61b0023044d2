"""Nightscout API benchmarks (issue 9): one xDrip+-sized day in one request, and 50 uploaders at once.

1. Posting 288 sgv entries (a day of 5-minute readings) in one request, as the server measures it
   (its ``Server-Timing`` header: from the request's arrival to the answer), on SQLite and on
   PostgreSQL; target ≤ 30 ms. ``glucoshare serve`` runs as a process of its own; each request
   brings a new day, after warm-up requests (a running server has compiled its statements).
2. 50 uploaders at once on PostgreSQL for a minute, from a second process on loopback
   (``benchmarks/ns_load.py``): each posts 1 to 3 new readings every 2 seconds (an xDrip+ posts
   every 5 minutes: time runs 150 times faster) and sends one request in ten twice. Latency
   p50/p99 as the clients see it (target p99 ≤ 250 ms), errors (target none), and afterwards the
   stored documents and records are counted: every acknowledged reading stored exactly once
   (nothing lost, nothing doubled). The same again with a post every second per uploader shows
   where this machine saturates (no target).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from databases import scratch_postgres

from analytics import Measurement, measurement_table
from glucoshare.accounts.service import add_patient, validate_patient
from glucoshare.accounts.sessions import create_api_token
from glucoshare.config import Settings
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine, session_scope
from glucoshare.nightscout.models import NightscoutDocument
from glucoshare.records.models import Record
from glucoshare.vault.keyfile import load_or_create

HERE = Path(__file__).resolve().parent
DAY_START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
STEP_MS = 300_000
UPLOADERS = 50
LOAD_SECONDS = 60.0
TARGETS = {"post_288": 0.030, "load_p99": 0.250}


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _patients(url: str, data_dir: Path, count: int) -> list[str]:
    """``count`` patients with a Nightscout credential each; their API secrets' SHA-1."""
    settings = Settings(database_url=url, data_dir=data_dir)
    engine = create_db_engine(url, keyring=load_or_create(settings.effective_secret_key_file))
    upgrade(engine, data_dir=settings.data_dir)
    secrets = []
    with session_scope(engine) as session:
        for n in range(count):
            patient = add_patient(
                session,
                validate_patient(email=f"uploader{n}@example.org", name=f"Uploader {n}", timezone="UTC"),
            )
            created = create_api_token(session, patient, kind="nightscout", created_by="benchmark")
            assert created.api_secret is not None  # noqa: S101 - nightscout tokens have one
            secrets.append(_sha1(created.api_secret))
    engine.dispose()
    return secrets


@contextlib.contextmanager
def _server(url: str, data_dir: Path) -> Iterator[str]:
    """``glucoshare serve`` as a process of its own on a free port of 127.0.0.1."""
    port = _free_port()
    env = {**os.environ, "GLUCOSHARE_DATABASE_URL": url, "GLUCOSHARE_DATA_DIR": str(data_dir)}
    process = subprocess.Popen(
        [sys.executable, "-m", "glucoshare", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                msg = "glucoshare serve did not start"
                raise RuntimeError(msg)
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def _day(day: int) -> list[dict[str, Any]]:
    start = DAY_START_MS + day * 86_400_000
    return [
        {
            "type": "sgv",
            "sgv": 80 + (i * 7) % 150,
            "date": start + i * STEP_MS,
            "direction": "Flat",
            "device": "xDrip-DexcomG6",
            "noise": 1,
            "filtered": 0,
            "unfiltered": 0,
            "rssi": 100,
        }
        for i in range(288)
    ]


def _post_288(url: str, runs: int) -> list[float]:
    """Server seconds of posting 288 new entries, ``runs`` times after 3 warm-up requests."""
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        (secret,) = _patients(url, data_dir, 1)
        timings = []
        with (
            _server(url, data_dir) as base,
            httpx.Client(base_url=base, headers={"api-secret": secret}) as client,
        ):
            for day in range(3 + runs):
                answer = client.post("/api/v1/entries", json=_day(day))
                answer.raise_for_status()
                if day >= 3:
                    timing = answer.headers["server-timing"]
                    timings.append(float(timing.split("dur=", 1)[1]) / 1000)
        return timings


def _load(url: str, interval: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        secrets = _patients(url, data_dir, UPLOADERS)
        secrets_file = data_dir / "secrets.json"
        secrets_file.write_text(json.dumps(secrets))
        with _server(url, data_dir) as base:
            out = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "ns_load.py"),
                    "--url",
                    base,
                    "--secrets",
                    str(secrets_file),
                    "--seconds",
                    str(LOAD_SECONDS),
                    "--interval",
                    str(interval),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        result: dict[str, Any] = json.loads(out.stdout)
        engine = create_db_engine(
            url, keyring=load_or_create(Settings(data_dir=data_dir).effective_secret_key_file)
        )
        with session_scope(engine) as session:
            documents = session.scalar(sa.select(sa.func.count()).select_from(NightscoutDocument)) or 0
            records = session.scalar(sa.select(sa.func.count()).select_from(Record)) or 0
        engine.dispose()
        acked = sum(len(dates) for dates in result["acked"].values())
        result.update(documents=documents, records=records, acked_readings=acked)
        return result


def run(runs: int = 7) -> list[Measurement]:
    """Every Nightscout measurement."""
    measurements = []
    with tempfile.TemporaryDirectory() as folder:
        timings = _post_288(f"sqlite:///{folder}/ns.db", runs)
    measurements.append(
        Measurement(
            "post_288_sqlite",
            "POST of 288 sgv entries (one day) in one request, server time, SQLite (median of 7)",
            statistics.median(timings),
            TARGETS["post_288"],
        )
    )
    with scratch_postgres() as url:
        if url is not None:
            timings = _post_288(url, runs)
            measurements.append(
                Measurement(
                    "post_288_postgresql",
                    "the same on PostgreSQL (median of 7)",
                    statistics.median(timings),
                    TARGETS["post_288"],
                )
            )
    for key, interval, target in (("load_p99", 2.0, TARGETS["load_p99"]), ("load_stress_p99", 1.0, None)):
        with scratch_postgres() as url:
            if url is not None:
                measurements.append(_load_measurement(key, url, interval, target))
    for m in measurements:
        print(m.key, json.dumps({"seconds": m.seconds, "target": m.target, "note": m.note}), file=sys.stderr)
    return measurements


def _load_measurement(key: str, url: str, interval: float, target: float | None) -> Measurement:
    result = _load(url, interval)
    latencies = sorted(result["latencies"])
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    exact = result["documents"] == result["acked_readings"] == result["records"]
    note = (
        f"{len(latencies):,} requests in {result['seconds']:.0f} s "
        f"({len(latencies) / result['seconds']:.0f}/s), p50 {p50 * 1000:.0f} ms, "
        f"{len(result['errors'])} errors; {result['acked_readings']:,} readings acknowledged, "
        f"{result['documents']:,} documents and {result['records']:,} records stored "
        f"({'exact: none lost, none doubled' if exact else 'NOT exact'})"
    )
    return Measurement(
        key,
        f"{UPLOADERS} uploaders at once on PostgreSQL for {LOAD_SECONDS:.0f} s, each posting every "
        f"{interval:g} s: p99 latency",
        p99,
        target,
        note,
    )


def report_lines(measurements: list[Measurement]) -> list[str]:
    """The BENCHMARKS.md section."""
    intro = (
        "`glucoshare serve` in a process of its own, clients on loopback (`benchmarks/nightscout.py`, "
        "load from `benchmarks/ns_load.py` in a second process). Server time is the server's own "
        "`Server-Timing` header. Targets (issue 9): 288 sgv entries in one request ≤ 30 ms server "
        "time; 50 concurrent uploaders on PostgreSQL with p99 ≤ 250 ms, no error, and no reading "
        "lost or doubled."
    )
    lines = measurement_table("Nightscout API", intro, measurements)
    notes = [f"- {m.description}: {m.note}" for m in measurements if m.note and m.target is not None]
    return [*lines, *notes, ""] if notes else lines


if __name__ == "__main__":
    print("\n".join(report_lines(run())))
