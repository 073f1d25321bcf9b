"""The sandbox ASGI app: the emulated CryptoMate API plus the /_sandbox control surface."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from hookstream.sandbox.api import ENDPOINTS
from hookstream.sandbox.control import build_routes
from hookstream.sandbox.gateway import routes
from hookstream.sandbox.runtime import Sandbox


def create_app(sandbox: Sandbox | None = None, **kwargs: Any) -> Starlette:
    """A Starlette app around `sandbox` (or a new Sandbox(**kwargs)); `app.state.sandbox` holds it."""
    sandbox = sandbox or Sandbox(**kwargs)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sandbox.sender.aclose()

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        # Unknown paths answer in the platform's error model too.
        return JSONResponse({"code": "NOT_FOUND", "message": f"No endpoint {request.method} {request.url.path}"},
                            status_code=404)

    app = Starlette(routes=build_routes(sandbox) + routes(sandbox, ENDPOINTS), lifespan=lifespan,
                    exception_handlers={404: not_found})
    app.state.sandbox = sandbox
    return app
