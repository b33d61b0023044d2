"""Load generator of the population benchmark: N API clients mixing uploads and reads, in a process apart.

Run by ``benchmarks/population.py`` as a second process on loopback:
``python benchmarks/api_load.py --plan PLAN.json --out RESULT.json``. The plan names the servers,
the duration, the mean think time and one entry per client; client n talks to server n mod S.
Each client is a thread with its own HTTP connection and credential, and one of four roles:

* ``ns_uploader``, an xDrip+-like app: posts the next 1 to 3 sgv entries to ``/api/v1/entries``
  (API secret); one post in ten is sent twice (an app that lost the answer);
* ``app_uploader``, an app on the upload API: opens a continuous data set, then appends 1 to 12
  CGM readings per request with an ``Idempotency-Key``; one request in ten is repeated with the
  same key (the answer must say ``repeated``) and one in twenty without it (nothing may be new);
* ``follower``, a phone or watch following a patient: reads the latest entries (Nightscout API),
  sometimes a whole day of them, and sometimes the 14-day stats document (``/v1``, API token);
* ``clinician``, a clinician's browser session: a page of the clinic's patient list (varying sort,
  page and search), then one patient's 14-day stats, sometimes the AGP report as HTML, rarely as
  PDF.

Between two requests a client waits a think time drawn uniformly from 0.5 to 1.5 times the mean. A
failed write (connection error, time-out, non-2xx) is retried once after a second, as apps do; the
failure still counts as an error. Readings carry known values and instants: client n's k-th reading
is at ``start_ms + k minutes + slot seconds`` so that no two clients write the same instant of the
same patient. Writes the result as one JSON document: every request (kind, server, start, latency,
status), the errors, and every write with its readings and whether it was acknowledged.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx

MINUTE_MS = 60_000
CLINIC_SORTS = ("triage", "name", "time_in_range", "last_data", "time_below_range", "gmi")
SEARCHES = ("an", "mia", "son", "lee", "ra", "kim")


@dataclasses.dataclass
class Log:
    """What one client saw (merged into the result under a lock at the end)."""

    requests: list[list[Any]] = dataclasses.field(default_factory=list)
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    writes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    anomalies: list[dict[str, Any]] = dataclasses.field(default_factory=list)


class Client:
    """One simulated API client: a role, a credential, a server and its own clock."""

    def __init__(self, n: int, spec: dict[str, Any], plan: dict[str, Any], began: float) -> None:
        self.n = n
        self.spec = spec
        self.server = n % len(plan["servers"])
        self.base = plan["servers"][self.server]
        self.think = float(plan["think"])
        self.stop_at = began + float(plan["seconds"])
        self.began = began
        self.rng = random.Random(int(plan.get("seed", 0)) * 100_003 + n)
        self.log = Log()
        self.sent = 0  # readings made so far (the next one is reading number ``sent``)

    # -- plumbing -------------------------------------------------------------------------------

    def call(
        self,
        http: httpx.Client,
        kind: str,
        method: str,
        path: str,
        **kwargs: Any,  # noqa: ANN401 - httpx's arguments
    ) -> httpx.Response | None:
        """One request: its latency and status are logged; an unexpected answer is an error."""
        started = time.monotonic()
        try:
            answer = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            latency = time.monotonic() - started
            self.log.requests.append([kind, self.server, started - self.began, latency, type(exc).__name__])
            self.log.errors.append({"kind": kind, "error": type(exc).__name__, "client": self.n})
            return None
        latency = time.monotonic() - started
        self.log.requests.append([kind, self.server, started - self.began, latency, answer.status_code])
        if not 200 <= answer.status_code < 300:
            self.log.errors.append(
                {"kind": kind, "error": str(answer.status_code), "client": self.n, "body": answer.text[:300]}
            )
            return None
        return answer

    def pause(self, factor: float = 1.0) -> None:
        """Think: 0.5 to 1.5 times the mean think time (times ``factor``), not beyond the end."""
        wait = self.think * factor * self.rng.uniform(0.5, 1.5)
        time.sleep(max(0.0, min(wait, self.stop_at - time.monotonic())))

    def running(self) -> bool:
        """Whether the run goes on."""
        return time.monotonic() < self.stop_at

    def instant(self, k: int) -> int:
        """The UTC instant (ms) of this client's ``k``-th reading."""
        return int(self.spec["start_ms"]) + k * MINUTE_MS + int(self.spec["slot"]) * 1000

    def value(self, k: int) -> int:
        """The glucose (mg/dL) of this client's ``k``-th reading: known, varied, 60 to 259."""
        return 60 + (k * 7 + self.n * 13) % 200

    def next_readings(self, low: int, high: int) -> list[int]:
        """Numbers of the next ``low`` to ``high`` readings."""
        count = self.rng.randint(low, high)
        first = self.sent
        self.sent += count
        return list(range(first, first + count))

    # -- roles ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Play the client's role until the end of the run."""
        time.sleep(self.rng.random() * self.think)  # clients do not start in step
        headers = {"User-Agent": f"glucoshare-load/{self.spec['role']}"}
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as http:
            getattr(self, self.spec["role"])(http)

    def ns_uploader(self, http: httpx.Client) -> None:
        """An xDrip+-like uploader posting sgv entries with its API secret."""
        secret = {"api-secret": self.spec["secret"]}
        device = f"xDrip-LoadTest-{self.n}"
        while self.running():
            numbers = self.next_readings(1, 3)
            batch = [
                {
                    "type": "sgv",
                    "sgv": self.value(k),
                    "date": self.instant(k),
                    "dateString": _iso(self.instant(k)),
                    "device": device,
                    "direction": "Flat",
                }
                for k in numbers
            ]
            acked = False
            for attempt in range(2):
                answer = self.call(http, "ns_post", "POST", "/api/v1/entries", json=batch, headers=secret)
                if answer is not None:
                    acked = acked or len(answer.json()) == len(batch)
                    if self.rng.random() < 0.1:  # the answer was lost: the app sends it again
                        again = self.call(
                            http, "ns_post_repeat", "POST", "/api/v1/entries", json=batch, headers=secret
                        )
                        acked = acked or (again is not None and len(again.json()) == len(batch))
                    break
                if attempt == 0:
                    time.sleep(1.0)
            self.log.writes.append(
                {
                    "client": self.n,
                    "route": "nightscout",
                    "patient_id": self.spec["patient_id"],
                    "times": [self.instant(k) for k in numbers],
                    "acked": acked,
                }
            )
            self.pause()

    def app_uploader(self, http: httpx.Client) -> None:
        """An app on the upload API: one continuous data set, records appended with idempotency keys."""
        bearer = {"Authorization": f"Bearer {self.spec['token']}"}
        opened = None
        while opened is None and self.running():
            opened = self.call(
                http,
                "dataset_open",
                "POST",
                "/v1/datasets",
                headers=bearer,
                json={
                    "device": {"manufacturer": "LoadTest", "model": "App", "serial": f"LT-{self.n}"},
                    "continuous": True,
                    "name": f"load-{self.n}",
                    "timezone": "UTC",
                },
            )
            if opened is None:
                time.sleep(1.0)
        if opened is None:
            return
        dataset = opened.json()["id"]
        self.pause()
        request = 0
        while self.running():
            numbers = self.next_readings(1, 12)
            body = {
                "records": [
                    {
                        "type": "cbg",
                        "subtype": "sensor",
                        "time": _iso(self.instant(k)),
                        "value": self.value(k),
                        "unit": "mg/dL",
                    }
                    for k in numbers
                ]
            }
            key = {**bearer, "Idempotency-Key": f"{dataset}:{request}"}
            request += 1
            path = f"/v1/datasets/{dataset}/records"
            acked = False
            for attempt in range(2):
                answer = self.call(http, "dataset_append", "POST", path, json=body, headers=key)
                if answer is not None:
                    acked = answer.json().get("accepted") == len(numbers)
                    self._repeat_append(http, path, body, key, bearer)
                    break
                if attempt == 0:
                    time.sleep(1.0)
            self.log.writes.append(
                {
                    "client": self.n,
                    "route": "dataset",
                    "patient_id": self.spec["patient_id"],
                    "times": [self.instant(k) for k in numbers],
                    "acked": acked,
                }
            )
            self.pause()

    def _repeat_append(
        self,
        http: httpx.Client,
        path: str,
        body: dict[str, Any],
        key: dict[str, str],
        bearer: dict[str, str],
    ) -> None:
        """Sometimes send an acknowledged append again: with its key it is ``repeated``; without, not new."""
        draw = self.rng.random()
        if draw < 0.1:
            again = self.call(http, "dataset_repeat_key", "POST", path, json=body, headers=key)
            if again is not None and not again.json().get("repeated"):
                self.log.anomalies.append({"client": self.n, "what": "repeated key not recognised"})
        elif draw < 0.15:
            again = self.call(http, "dataset_repeat", "POST", path, json=body, headers=bearer)
            if again is not None and again.json().get("new"):
                self.log.anomalies.append({"client": self.n, "what": "a repeated append stored records"})

    def follower(self, http: httpx.Client) -> None:
        """A follower app: the latest entries, sometimes a day of them, sometimes the stats."""
        secret = {"api-secret": self.spec["secret"]}
        bearer = {"Authorization": f"Bearer {self.spec['token']}"}
        while self.running():
            draw = self.rng.random()
            if draw < 0.15:
                self.call(
                    http,
                    "stats_14d",
                    "GET",
                    f"/v1/patients/{self.spec['patient_id']}/stats",
                    params={"days": 14},
                    headers=bearer,
                )
            elif draw < 0.25:
                self.call(http, "ns_entries_day", "GET", "/api/v1/entries.json?count=288", headers=secret)
            else:
                self.call(http, "ns_entries", "GET", "/api/v1/entries.json?count=12", headers=secret)
            self.pause()

    def clinician(self, http: httpx.Client) -> None:
        """A clinician: a page of the patient list, then a patient's stats and sometimes the AGP."""
        bearer = {"Authorization": f"Bearer {self.spec['token']}"}
        clinic = self.spec["clinic_id"]
        population = int(self.spec["patients"])
        while self.running():
            params: dict[str, Any] = {"limit": 50, "sort": self.rng.choice(CLINIC_SORTS)}
            if self.rng.random() < 0.2:
                params["search"] = self.rng.choice(SEARCHES)
            else:
                params["offset"] = 50 * self.rng.randrange(max(1, population // 50))
            listing = self.call(
                http, "clinic_list", "GET", f"/v1/clinics/{clinic}/patients", params=params, headers=bearer
            )
            shown = [] if listing is None else [row["patient_id"] for row in listing.json()["patients"]]
            if listing is not None and "search" not in params and not shown:
                self.log.anomalies.append({"client": self.n, "what": "empty page of the patient list"})
            self.pause()
            if not shown or not self.running():
                continue
            patient = self.rng.choice(shown)
            self.call(
                http, "stats_14d", "GET", f"/v1/patients/{patient}/stats", params={"days": 14}, headers=bearer
            )
            self.pause()
            draw = self.rng.random()
            if draw < 0.05 and self.running():
                answer = self.call(
                    http,
                    "agp_pdf",
                    "GET",
                    f"/v1/patients/{patient}/reports/agp",
                    params={"days": 14, "format": "pdf"},
                    headers=bearer,
                )
                if answer is not None and not answer.content.startswith(b"%PDF"):
                    self.log.anomalies.append({"client": self.n, "what": "the AGP PDF is not a PDF"})
                self.pause()
            elif draw < 0.35 and self.running():
                self.call(
                    http,
                    "agp_html",
                    "GET",
                    f"/v1/patients/{patient}/reports/agp",
                    params={"days": 14},
                    headers=bearer,
                )
                self.pause()


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan", required=True, type=Path, help="the plan JSON written by population.py")
    parser.add_argument("--out", required=True, type=Path, help="where to write the result JSON")
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    began = time.monotonic()
    clients = [Client(n, spec, plan, began) for n, spec in enumerate(plan["clients"])]
    threads = [threading.Thread(target=client.run, name=f"client-{client.n}") for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out: dict[str, Any] = {"seconds": time.monotonic() - began, **dataclasses.asdict(Log())}
    for client in clients:
        for name in ("requests", "errors", "writes", "anomalies"):
            out[name].extend(getattr(client.log, name))
    args.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
