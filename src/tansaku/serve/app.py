"""The web application: pages and JSON over one database, OPTIMADE beside them, behind a token when not local.

Read-only by construction: the database is opened with writes refused by the engine itself (SQLite's
query_only, PostgreSQL's read-only transactions), and the server answers only GET and HEAD.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from tansaku import TansakuError, __version__
from tansaku.store import browse
from tansaku.store.database import Database

TOKEN_COOKIE = "tansaku_token"
CACHE_SECONDS = 30.0


@dataclass
class AppState:
    """What every request reads: the database, where models are, and a short cache of slow-changing lists."""

    db: Database
    models_dir: Path | None = None
    token: str | None = None
    model_meta: dict[tuple, object] = field(default_factory=dict)  # (path, mtime, size) → metadata or refusal
    _cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def _cached(self, key: str, compute) -> Any:
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        with self.db.session() as session:
            value = compute(session)
        self._cache[key] = (time.monotonic(), value)
        return value

    def property_names(self) -> list[str]:
        return self._cached("properties", browse.property_names)

    def methods(self) -> list[str]:
        return self._cached("methods", browse.methods)

    def sources(self) -> list[str]:
        return self._cached("sources", browse.sources)

    def subsets(self) -> list[str]:
        return self._cached("subsets", browse.subsets)

    def structure_count(self) -> int:
        """How many materials OPTIMADE serves (its data_available), counted at most every CACHE_SECONDS."""
        return self._cached("structures", browse.structure_count)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _presented_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)


def create_app(db: Database, models_dir: Path | None = None, token: str | None = None) -> FastAPI:
    """The application; `token` (None: none needed, for loopback) is then required on every request."""
    from tansaku.serve import optimade_api, pages

    state = AppState(db=db, models_dir=models_dir, token=token)
    app = FastAPI(title="tansaku", version=__version__, docs_url=None, redoc_url=None,
                  description="Materials, properties with provenance, models, campaigns and jobs of a tansaku "
                              "database, as JSON; the same server answers OPTIMADE under /optimade.")
    app.state.tansaku = state

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.method not in ("GET", "HEAD"):
            return PlainTextResponse("this server is read-only: GET and HEAD only", status_code=405)
        if len(str(request.url)) > 4096:
            return PlainTextResponse("request URL longer than 4096 characters", status_code=414)
        if state.token is not None:
            presented = _presented_token(request)
            if presented is None or not hmac.compare_digest(presented.encode(), state.token.encode()):
                return PlainTextResponse("an access token is needed: ?token=..., or the header "
                                         "'Authorization: Bearer ...'", status_code=401)
            if request.query_params.get("token") and request.method == "GET":
                # the token given once in the address becomes a cookie, and the address is cleaned of it
                kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + urlencode(kept) if kept else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(TOKEN_COOKIE, state.token, httponly=True, samesite="strict")
                return response
        response: Response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    @app.exception_handler(TansakuError)
    async def refused(request: Request, exc: TansakuError):
        if request.url.path.startswith(("/api/", "/optimade/")):
            return JSONResponse({"detail": str(exc)}, status_code=_status(exc))
        return pages.error_page(request, _status(exc), str(exc))

    @app.exception_handler(optimade_api.OptimadeError)
    async def optimade_refused(request: Request, exc: optimade_api.OptimadeError):
        return optimade_api.error_response(request, exc.status, exc.detail)

    app.include_router(optimade_api.router(state))
    app.include_router(pages.router(state))
    return app


def _status(exc: TansakuError) -> int:
    return 404 if str(exc).startswith("no ") else 400
