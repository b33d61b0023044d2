"""Load generator of the Nightscout benchmark: N uploaders posting sgv entries, in a process of its own.

Run by ``benchmarks/nightscout.py`` as a second process on loopback:
``python benchmarks/ns_load.py --url URL --secrets FILE --seconds S --interval I``. Each uploader (a
thread with its own HTTP connection and API secret) posts, every ``interval`` seconds, the next
1 to 3 readings of its patient; one request in ten is sent twice (an app retrying after a lost
answer). Prints one JSON document: every request's latency, the errors, and per secret the
readings acknowledged with HTTP 200.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

START_MS = 1_767_225_600_000  # 2026-01-01T00:00Z
STEP_MS = 300_000


def _uploader(
    url: str,
    secret: str,
    seed: int,
    *,
    stop_at: float,
    interval: float,
    out: dict[str, Any],
    lock: threading.Lock,
) -> None:
    rng = random.Random(seed)
    latencies: list[float] = []
    errors: list[str] = []
    acked: set[int] = set()
    sent = 0
    time.sleep(rng.random() * interval)  # uploaders do not start in step
    with httpx.Client(base_url=url, headers={"api-secret": secret}, timeout=30) as client:
        while time.monotonic() < stop_at:
            batch = [
                {
                    "type": "sgv",
                    "sgv": 60 + (sent + i) % 200,
                    "date": START_MS + (sent + i) * STEP_MS,
                    "device": "bench-uploader",
                    "direction": "Flat",
                }
                for i in range(rng.randint(1, 3))
            ]
            for attempt in range(2 if rng.random() < 0.1 else 1):
                began = time.perf_counter()
                try:
                    answer = client.post("/api/v1/entries", json=batch)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                latencies.append(time.perf_counter() - began)
                if answer.status_code != 200:
                    errors.append(str(answer.status_code))
                elif len(answer.json()) == len(batch) and attempt == 0:
                    acked.update(doc["date"] for doc in batch)
            sent += len(batch)
            time.sleep(max(0.0, interval - (time.perf_counter() - began)))
    with lock:
        out["latencies"].extend(latencies)
        out["errors"].extend(errors)
        out["acked"][secret] = sorted(acked)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--secrets", required=True, type=Path, help="a JSON list of SHA-1 API secrets")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    secrets = json.loads(args.secrets.read_text())
    out: dict[str, Any] = {"latencies": [], "errors": [], "acked": {}}
    lock = threading.Lock()
    stop_at = time.monotonic() + args.seconds
    threads = [
        threading.Thread(
            target=_uploader,
            args=(args.url, secret, n),
            kwargs={"stop_at": stop_at, "interval": args.interval, "out": out, "lock": lock},
        )
        for n, secret in enumerate(secrets)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["seconds"] = time.perf_counter() - began
    print(json.dumps(out))


if __name__ == "__main__":
    main()
