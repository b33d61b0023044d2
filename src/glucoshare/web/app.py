"""The application factory: ``create_app(settings)`` builds the ASGI app that ``glucoshare serve`` runs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic.json_schema import models_json_schema
from sqlalchemy import Engine, text

from glucoshare import __version__
from glucoshare.config import Settings
from glucoshare.datasets.schemas import RecordsIn
from glucoshare.db.migrate import upgrade
from glucoshare.db.session import create_db_engine
from glucoshare.vault.keyfile import load_or_create
from glucoshare.web.api import account, auth, clinics, datasets, patients, reports, sharing
from glucoshare.web.api.schemas import Health
from glucoshare.web.deps import unit_of_work
from glucoshare.web.errors import install_error_handlers
from glucoshare.web.nightscout import followers
from glucoshare.web.nightscout import routes as nightscout
from glucoshare.web.nightscout import v3 as nightscout_v3
from glucoshare.web.security import AuditOrigin, BodyLimit, SecurityHeaders, ServerTiming
from glucoshare.web.ui import help as help_pages
from glucoshare.web.ui import pages

JSON_BODY_LIMIT = 1024 * 1024
"""Largest JSON request body outside file uploads (1 MiB)."""
NIGHTSCOUT_BODY_LIMIT = 8 * 1024 * 1024
"""Largest request body of the Nightscout API (a day of a loop's device status fits easily)."""

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Glucoshare API</title>
<link rel="stylesheet" href="/static/vendor/swagger/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/static/vendor/swagger/swagger-ui-bundle.js"></script>
<script src="/static/docs.js"></script>
</body>
</html>
"""


def _describe_raw_bodies(app: FastAPI) -> None:
    """Add the schemas of bodies that routes read themselves (to point at each fault) to ``/openapi.json``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _, top = models_json_schema(
                [(RecordsIn, "validation")], ref_template="#/components/schemas/{model}"
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The web app on ``engine`` (default: the configured database with its master key, migrated)."""
    if engine is None:
        key_file = settings.effective_secret_key_file
        engine = create_db_engine(
            settings.effective_database_url, keyring=load_or_create(key_file), key_file=key_file
        )
        upgrade(engine, data_dir=settings.data_dir)
    app = FastAPI(
        title="Glucoshare",
        version=__version__,
        summary="Diabetes device data from any device, in one place, shared safely.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    install_error_handlers(app)
    for router in (
        auth.router,
        account.router,
        patients.router,
        datasets.router,
        reports.router,
        sharing.router,
        clinics.router,
        pages.router,
        help_pages.router,
        nightscout.router,
        nightscout_v3.router,
        followers.router,
    ):
        app.include_router(router)
    app.state.page_error = pages.page_error
    _describe_raw_bodies(app)

    @app.get("/health", tags=["operations"])
    def health(request: Request) -> Health:
        """The server answers and its database is reachable."""
        with unit_of_work(request) as session:
            session.execute(text("SELECT 1"))
        return Health(status="ok", version=__version__)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The API, browsable (Swagger UI served from this server, no CDN, no inline script)."""
        return HTMLResponse(_DOCS_PAGE)

    static = resources.files("glucoshare.web") / "static"
    app.mount(
        "/static/vendor/swagger", StaticFiles(directory=Path(fastapi_offline.__file__).parent / "static")
    )
    ui_static = resources.files("glucoshare.web.ui") / "static"
    app.mount("/static/ui", StaticFiles(directory=str(ui_static)), name="ui-static")
    reports_static = resources.files("glucoshare.reports") / "static"
    app.mount("/static/reports", StaticFiles(directory=str(reports_static)), name="report-static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(AuditOrigin)
    app.add_middleware(
        BodyLimit,
        default=JSON_BODY_LIMIT,
        limits={"/v1/patients/": settings.max_upload_bytes + 64 * 1024, "/api/": NIGHTSCOUT_BODY_LIMIT},
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ServerTiming)
    return app
