"""``glucoshare serve [--host 127.0.0.1] [--port 8000]``: the web app, REST API and Nightscout API."""

from __future__ import annotations

import threading
from typing import Annotated

import typer
import uvicorn

from glucoshare.cli.runtime import engine, handle_errors, settings, stderr
from glucoshare.jobs.service import queue_available
from glucoshare.jobs.worker import run_worker
from glucoshare.web.app import create_app
from glucoshare.web.logging import log_config


@handle_errors
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    jobs: Annotated[
        bool,
        typer.Option(
            "--jobs/--no-jobs",
            help="On PostgreSQL, also run background jobs in this process; use --no-jobs where "
            "`glucoshare worker` services run them.",
        ),
    ] = True,
) -> None:
    """Serve the web app, the REST API (/v1, /docs) and the Nightscout-compatible API."""
    db = engine()
    app = create_app(settings(), db)
    if jobs and queue_available(db):
        # A daemon thread: a job cut short when the server stops is run again by the next worker.
        threading.Thread(
            target=run_worker,
            args=(db, settings()),
            kwargs={"install_signal_handlers": False, "name": "serve-worker"},
            name="glucoshare-jobs",
            daemon=True,
        ).start()
        stderr.print("Background jobs run in this process (--no-jobs to leave them to workers)", markup=False)
    stderr.print(f"Glucoshare listening on http://{host}:{port} (API docs at /docs)", markup=False)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=log_config(),
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        server_header=False,
    )
