"""Cross-origin rules of the HTTP answers: the isolation headers OHIF needs (its decoders use
SharedArrayBuffer, which a browser gives only to a cross-origin isolated page), and CORS for
the web origins the settings name, never a wildcard."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ISOLATION_HEADERS", "CrossOriginIsolation", "install_cross_origin"]

ISOLATION_HEADERS = (
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


class CrossOriginIsolation:
    """Adds COOP ``same-origin``, COEP ``require-corp`` and CORP ``same-origin`` to every
    answer whose path starts with one of ``prefixes`` (every answer: ``("/",)``)."""

    def __init__(self, app: ASGIApp, prefixes: Sequence[str] = ("/",)) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return

        async def isolated(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in ISOLATION_HEADERS if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, isolated)


def install_cross_origin(app: FastAPI, origins: Sequence[str],
                         isolated: Sequence[str]) -> None:
    """CORS for ``origins`` (bearer tokens only: no cookie crosses origins) and the
    isolation headers on the paths under ``isolated``."""
    if isolated:
        app.add_middleware(CrossOriginIsolation, prefixes=tuple(isolated))
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(origins),
                           allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
                           allow_headers=["Authorization", "Accept", "Content-Type"],
                           expose_headers=["Content-Type", "Content-Location"],
                           allow_credentials=False, max_age=600)
