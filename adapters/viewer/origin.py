"""The viewer's origin: OHIF's dist at the root (every client route falls back to
``index.html``: OHIF routes in the browser), beside the service's ``/dicomweb`` on the same
origin, so that OHIF's requests carry the console's session cookie (cookies ignore the port).
Every answer is cross-origin isolated (COOP, COEP, CORP)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from adapters.http.app import Mount, create_app
from adapters.http.cross_origin import install_cross_origin

__all__ = ["SinglePageFiles", "viewer_app"]

_NOT_CACHED = ("index.html", "app-config.js")


class SinglePageFiles(StaticFiles):
    """A single-page application's files: a path naming no file and no file extension is
    one of its client routes, answered with ``index.html``; a missing asset is a 404."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            response = await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or "." in PurePosixPath(path).name:
                raise
            path, response = "index.html", await super().get_response("index.html", scope)
        name = PurePosixPath(path).name or "index.html"
        if name in _NOT_CACHED or path in ("", "."):
            response.headers["Cache-Control"] = "no-cache"
        return response


def viewer_app(container: Any, dist: Path, mounts: Sequence[Mount],
               cors_origins: Sequence[str] = ()) -> FastAPI:
    """The viewer origin's application: the routes of ``mounts`` (``/dicomweb``), then
    OHIF's files for every other path."""

    def files(app: FastAPI) -> None:
        app.mount("/", SinglePageFiles(directory=str(dist), html=True), name="viewer")

    app = create_app(container, [*mounts, files])
    install_cross_origin(app, cors_origins, isolated=("/",))
    return app
