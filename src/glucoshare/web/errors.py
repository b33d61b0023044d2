"""One JSON error shape for every HTTP error: ``{"error": {"code", "message", "status"}}``.

Web-app pages (every path outside the API, the docs and the static files) get a friendly error
page instead, when the app registered one (``app.state.page_error``).

Validation errors name the field and the rule but never echo the value (it may be a password).
Unexpected exceptions answer ``500``. Starlette then re-raises them to the server, whose log
handlers keep a traceback's exception types and places only (:class:`glucoshare.web.logging.
SafeTracebacks`): no request data, no health data, no driver message quoting a statement's values.
Faults of the database or the disk (:mod:`glucoshare.db.errors`) answer ``503`` with ``Retry-After``
or ``507``. A value the database cannot hold (PostgreSQL refuses a NUL character in text) answers
``422``: the request brought it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from glucoshare.db.errors import DatabaseUnavailableError, database_fault
from glucoshare.errors import GlucoshareError, TooManyRequestsError, UnauthenticatedError, error_document

log = logging.getLogger("glucoshare.web")

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


PageRenderer = Callable[[Request, int, str], Response]
"""Renders the web app's error page: request, status, message."""
_NOT_PAGES = ("/v1/", "/static/", "/docs", "/openapi.json", "/health", "/api/")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error shape."""
    return JSONResponse(error_document(code, message, status), status_code=status, headers=headers)


def _answer(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """The JSON error for API calls; for a web-app page, its friendly error page."""
    renderer: PageRenderer | None = getattr(request.app.state, "page_error", None)
    if renderer is not None and _is_page(request):
        return renderer(request, status, message)
    return error_response(status, code, message, headers)


def _is_page(request: Request) -> bool:
    """True for a web-app page (it gets the friendly error page, not JSON)."""
    return getattr(request.app.state, "page_error", None) is not None and not request.url.path.startswith(
        _NOT_PAGES
    )


async def _glucoshare_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GlucoshareError)  # noqa: S101 - registered for this class only
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyRequestsError | DatabaseUnavailableError):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, UnauthenticatedError):
        headers["WWW-Authenticate"] = 'Bearer realm="glucoshare"'
    if exc.http_status >= 500:  # noqa: PLR2004
        log.error("internal error: %s (%s)", type(exc).__name__, exc.code)
    if _is_page(request):
        return _answer(request, exc.http_status, exc.code, exc.message, headers)
    return JSONResponse(exc.to_dict(), status_code=exc.http_status, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return _answer(request, 422, "invalid_request", f"{where}: {message}" if where else message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return _answer(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _data_error(request: Request, exc: Exception) -> Response:
    """A value the database cannot hold (a NUL character in text, on PostgreSQL): the request's fault."""
    log.warning("refused a value the database cannot hold (%s)", type(getattr(exc, "orig", exc)).__name__)
    message = "a value of the request cannot be stored or looked up (does it hold a NUL character?)"
    return _answer(request, 422, "invalid_request", message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    fault = database_fault(exc)  # met outside a unit of work, which would have said so itself
    if fault is not None:
        return await _glucoshare_error(request, fault)
    log.error("internal error: %s", type(exc).__name__)
    return _answer(request, 500, "internal_error", "internal error; nothing was stored")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape."""
    app.add_exception_handler(GlucoshareError, _glucoshare_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(Exception, _unexpected)
