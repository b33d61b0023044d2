"""``glucoshare serve [--host 127.0.0.1] [--port 8000]``: the web app, REST API and Nightscout API."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from glucoshare.cli.runtime import engine, handle_errors, settings, stderr
from glucoshare.web.app import create_app
from glucoshare.web.logging import log_config


@handle_errors
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the web app, the REST API (/v1, /docs) and the Nightscout-compatible API."""
    app = create_app(settings(), engine())
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
