"""The console app: static pages, login, and the API routes the pages call.

The pages (`static/`: HTML, ES modules, CSS, all shipped with the package) are the same
for everyone and hold no data; everything else comes from `/api/` routes that answer 401
without a session (see `auth`). The service token and the gateway key stay in this
process: no answer carries them. Every answer forbids framing and inline scripts.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from forgeline.client import exceptions
from forgeline.console import routes_jobs, routes_registry, routes_serving, routes_submit
from forgeline.console.auth import COOKIE, Sessions, check_origin, require_session
from forgeline.console.clients import Clients
from forgeline.console.config import ConsoleConfig
from forgeline.console.errors import (
    ConsoleError,
    console_error_response,
    error_body,
    sdk_error_response,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Login(BaseModel):
    """The login form."""

    token: str = Field(max_length=1000)


def create_app(config: ConsoleConfig, clients: Clients | None = None) -> FastAPI:
    """Builds the console app.

    Args:
        config: Where the services are, and the console's token.
        clients: SDK clients to use instead of opening them from `config`.
    """
    clients = clients or Clients(config)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        clients.close()

    app = FastAPI(title="Forgeline console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.openapi_url = None  # the API is the pages' own, not a published one
    app.state.config = config
    app.state.clients = clients
    app.state.sessions = Sessions(config.token, config.session_seconds)

    @app.middleware("http")
    async def security_headers(request: Request, call_next) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if request.url.path.startswith("/api/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(ConsoleError)
    async def console_error(_request: Request, exc: ConsoleError) -> JSONResponse:
        return console_error_response(exc)

    @app.exception_handler(exceptions.ForgelineError)
    async def sdk_error(_request: Request, exc: exceptions.ForgelineError) -> JSONResponse:
        return sdk_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        violations = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body"),
                "description": e["msg"],
            }
            for e in exc.errors()
        ]
        return JSONResponse(error_body("invalid request", "invalid_request", violations), 400)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(str(exc.detail), "http_error"), exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("console request %s %s failed: %r", request.method, request.url.path, exc)
        return JSONResponse(error_body("the console failed to answer", "server_error"), 500)

    @app.get("/health")
    def health() -> dict:
        """200 while the console runs (it says nothing about the services)."""
        return {"status": "ok"}

    @app.post("/api/login")
    def login(request: Request, body: Login) -> JSONResponse:
        """Opens a session for the right token: sets the session cookie."""
        check_origin(request)
        session = app.state.sessions.login(body.token)
        response = JSONResponse({"ok": True})
        response.set_cookie(
            COOKIE,
            session,
            max_age=int(config.session_seconds),
            httponly=True,
            samesite="strict",
            secure=config.secure_cookies,
            path="/",
        )
        return response

    @app.post("/api/logout", dependencies=[Depends(require_session)])
    def logout(request: Request) -> JSONResponse:
        """Ends the session and clears its cookie."""
        app.state.sessions.logout(request.cookies.get(COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @app.get("/api/session", dependencies=[Depends(require_session)])
    def session() -> dict:
        """200 while the session lives: the page asks it to choose login or content."""
        return {"ok": True}

    for module in (routes_jobs, routes_registry, routes_serving, routes_submit):
        app.include_router(module.router)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
    def unknown_api(rest: str, _: None = Depends(require_session)) -> None:
        """Unknown API routes: 401 without a session like the others, else 404."""
        raise ConsoleError(404, f"no such route /api/{rest}", code="unknown_url")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/{page:path}", include_in_schema=False)
    def index(page: str) -> FileResponse:
        """The one page; the browser's router shows the part the path names."""
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    return app
