"""The console's routes: login (local account or identity provider), logout, the home page,
and the answer a browser gets when its session is missing (a redirection to the login page)
or a page is refused to it."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import json
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from adapters.auth.oidc import PkceStart
from adapters.auth.service import SESSION_COOKIE, LoginRefused
from adapters.auth.tokens import TokenRefused
from adapters.console.i18n import LANG_COOKIE, LANGUAGES, language, translator
from adapters.errors import DatabaseUnavailableError
from adapters.http.deps import CSRF_FIELD, CallerDep, ContainerDep, audit, public
from adapters.http.errors import RETRY_AFTER_SECONDS, unavailable
from adapters.logs import log_event
from mpi.audit import AuditAction
from mpi.security import Principal

__all__ = ["router", "install_login_redirect", "templates", "CONSOLE", "render"]

log = logging.getLogger("mpi.console")

CONSOLE = "/console"
HOME = f"{CONSOLE}/"
LOGIN = f"{CONSOLE}/login"
LOGIN_COOKIE = "mpi_login"  # the login form's own CSRF token (double submit)
OIDC_COOKIE = "mpi_oidc"  # the PKCE state between the provider's redirections
OIDC_CALLBACK = f"{CONSOLE}/oidc/callback"
_FOLDER = Path(__file__).resolve().parent

router = APIRouter(prefix=CONSOLE, tags=["console"], include_in_schema=False)
templates = Jinja2Templates(directory=str(_FOLDER / "templates"))


def render(request: Request, template: str, code: int = 200, **context: Any) -> HTMLResponse:
    """A console page, in the person's language. Pages are never cached and never framed by
    another site."""
    lang = language(request)
    context.setdefault("person", None)
    kept = {k: safe_next(v) if k == "next" else v  # never another site's address
            for k, v in request.query_params.items() if k != "lang"}
    switch = {code: request.url.path + "?" + urlencode({**kept, "lang": code})
              for code in LANGUAGES}
    response = templates.TemplateResponse(request, template, {
        **context, "lang": lang, "t": translator(lang), "languages": switch},
        status_code=code)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax",
                            path=CONSOLE, secure=_secure(request))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self' "
        f"{_provider_origin(request)}".rstrip())
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _provider_origin(request: Request) -> str:
    oidc = getattr(request.app.state.container.auth, "oidc", None)
    return oidc.issuer if oidc is not None else ""


def _secure(request: Request) -> bool:
    public_url = request.app.state.container.settings.public_url or ""
    return request.url.scheme == "https" or public_url.startswith("https://")


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this service only (never another site)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return HOME
    return target


def _base(request: Request) -> str:
    public_url = request.app.state.container.settings.public_url
    return (public_url or str(request.base_url)).rstrip("/")


def _session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax", path="/",
                        secure=_secure(request),
                        max_age=int(request.app.state.container.auth.session_lifetime))


def _trace_login(request: Request, name: str, outcome: str, reason: str,
                 principal: Principal | None = None, via: str = "password") -> None:
    success = outcome == "success"
    log_event(log, logging.INFO if success else logging.WARNING,
              "console login" if success else "console login refused", user=name,
              address=_address(request), via=via, reason=None if success else reason)
    audit(request, channel="console", action=AuditAction.AUTHENTICATE if success
          else AuditAction.ALERT, actor=f"user:{name}" if name else "anonymous",
          outcome=outcome, principal=principal, detail={"reason": reason, "via": via},
          subject=request.url.path)  # the provider's callback query holds the code


def _login_page(request: Request, status: int = 200, message: str | None = None,
                name: str = "", target: str = HOME) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    container = request.app.state.container
    response = render(request, "login.html", status, login_csrf=token, message=message,
                      name=name, next=safe_next(target),
                      provider=container.auth.oidc is not None)
    response.set_cookie(LOGIN_COOKIE, token, max_age=1800, httponly=True, samesite="strict",
                        path=LOGIN, secure=_secure(request))
    return response


@router.get("/login")
@public
def login_page(request: Request, next: str = HOME) -> HTMLResponse:
    return _login_page(request, target=next)


@router.post("/login")
@public
async def login(request: Request, container: ContainerDep) -> Response:
    form = await request.form()
    # ``username`` as the login form names it (``name`` still accepted from older scripts)
    name = str(form.get("username") or form.get("name") or "").strip()
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", HOME)))
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(str(form.get("login_csrf", "")), expected):
        return _login_page(request, 400, "The login form had expired: please try again.",
                           name, target)
    if not name or not password:
        return _login_page(request, 400, "Give your user name and your password.", name,
                           target)
    limiter = container.auth.login_failures
    wait = limiter.retry_after(name.lower())
    if wait:
        _trace_login(request, name, "429", "too many failed logins: slowed down")
        return _login_page(request, 429, f"Too many failed attempts: try again in "
                           f"{int(wait) + 1} seconds.", name, target)
    try:
        token, session = await run_in_threadpool(container.auth.login, name, password,
                                                 _address(request))
    except LoginRefused as exc:
        limiter.failed(name.lower())
        _trace_login(request, name, "401", exc.message)
        return _login_page(request, 401, "Unknown user, wrong password or disabled account.",
                           name, target)
    limiter.succeeded(name.lower())
    _trace_login(request, name, "success", "logged in",
                 Principal(kind="user", name=name, token_id=session.token_hash[:16]))
    response = RedirectResponse(target, status_code=303)
    _session_cookie(request, response, token)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN)
    return response


def _encode(kept: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(kept).encode()).decode("ascii")


def _decode(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    try:
        kept = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeError):
        return None
    return kept if isinstance(kept, dict) else None


@router.get("/oidc/start")
@public
def oidc_start(request: Request, container: ContainerDep, next: str = HOME) -> Response:
    """Send the person to the identity provider (authorization code with PKCE)."""
    oidc = container.auth.oidc
    if oidc is None:
        return _login_page(request, 404, "No identity provider is configured here.")
    try:
        start = oidc.start_login(_base(request) + OIDC_CALLBACK)
    except TokenRefused as exc:
        log_event(log, logging.ERROR, "identity provider unreachable", reason=exc.message)
        return _login_page(request, 502, "The identity provider cannot be reached: log in "
                                         "with a local account, or try again later.")
    response = RedirectResponse(start.url, status_code=303)
    response.set_cookie(OIDC_COOKIE, _encode({"state": start.state, "nonce": start.nonce,
                                              "verifier": start.verifier,
                                              "next": safe_next(next)}),
                        max_age=600, httponly=True, samesite="lax", path=f"{CONSOLE}/oidc",
                        secure=_secure(request))
    return response


@router.get("/oidc/callback")
@public
def oidc_callback(request: Request, container: ContainerDep, code: str | None = None,
                  state: str | None = None, error: str | None = None) -> Response:
    """The provider sends the person back here with a code, exchanged for their ID token."""
    oidc = container.auth.oidc
    kept = _decode(request.cookies.get(OIDC_COOKIE))
    if oidc is None or kept is None or not state or not hmac.compare_digest(
            state, str(kept.get("state", ""))):
        _trace_login(request, "", "400", "identity provider login without its state",
                     via="oidc")
        return _login_page(request, 400, "This login did not start here: please start again.")
    if error or not code:
        _trace_login(request, "", "401", f"the identity provider answered {error or 'no code'}",
                     via="oidc")
        return _login_page(request, 401, "The identity provider did not log you in.")
    start = PkceStart("", str(kept["state"]), str(kept.get("nonce", "")),
                      str(kept.get("verifier", "")))
    try:
        person = oidc.finish_login(code, _base(request) + OIDC_CALLBACK, start)
    except TokenRefused as exc:
        _trace_login(request, "", "401", exc.message, via="oidc")
        return _login_page(request, 401, "The identity provider's answer could not be "
                                         "verified.")
    token, session = container.auth.open_session(person.name, _address(request), person)
    _trace_login(request, person.name, "success", "logged in through the identity provider",
                 Principal(kind="user", name=person.name, establishment=person.establishment,
                           roles=person.roles, token_id=session.token_hash[:16],
                           issuer=person.issuer), via="oidc")
    response = RedirectResponse(safe_next(kept.get("next")), status_code=303)
    _session_cookie(request, response, token)
    response.delete_cookie(OIDC_COOKIE, path=f"{CONSOLE}/oidc")
    return response


@router.post("/logout")
def logout(request: Request, container: ContainerDep, caller: CallerDep) -> Response:
    """End the session (its CSRF token is checked like any change's)."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        container.auth.logout(token)
    audit(request, channel="console", action=AuditAction.AUTHENTICATE, outcome="success",
          detail={"reason": "logged out"})
    response = RedirectResponse(LOGIN, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/session")
def session(caller: CallerDep) -> JSONResponse:
    """Who the session is, and the CSRF token its changes carry (``X-CSRF-Token``): for the
    console's scripts and for tools a person runs in their session."""
    principal = caller.principal
    assert principal is not None  # deny_anonymous
    return JSONResponse({"name": principal.name, "roles": sorted(principal.roles),
                         "establishment": principal.establishment, "via": caller.via,
                         "csrf": caller.csrf}, headers={"Cache-Control": "no-store"})


@router.get("/")
def home(request: Request, caller: CallerDep) -> HTMLResponse:
    principal = caller.principal
    assert principal is not None  # deny_anonymous
    return render(request, "home.html", person=principal, csrf=caller.csrf,
                  csrf_field=CSRF_FIELD)


def install_login_redirect(app: FastAPI) -> None:
    """A browser asking for a console page without a session is sent to the login page
    (and back afterwards); a refused console page is an HTML page saying why. Other paths
    keep the handler installed before. A console page while the database is out of reach is
    an HTML page too (503 with Retry-After)."""
    previous = app.exception_handlers.get(StarletteHTTPException)

    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if path == CONSOLE or path.startswith(HOME):
            if exc.status_code == 401 and request.method in ("GET", "HEAD"):
                return RedirectResponse(f"{LOGIN}?next={quote(path)}", status_code=303)
            if 400 <= exc.status_code < 500:
                page = render(request, "refused.html", exc.status_code,
                              status=exc.status_code, reason=str(exc.detail))
                page.headers.update(exc.headers or {})  # a 401 keeps its challenge
                return page
        if previous is not None:
            answer = previous(request, exc)
            response: Response = await answer if inspect.isawaitable(answer) else answer
            return response
        return await http_exception_handler(request, exc)

    previous_invalid = app.exception_handlers.get(RequestValidationError,
                                                  request_validation_exception_handler)

    async def invalid(request: Request, exc: Exception) -> Response:
        """A console request the routes cannot read is a 400 page, never a JSON answer."""
        path = request.url.path
        if path == CONSOLE or path.startswith(HOME):
            return render(request, "refused.html", 400, status=400,
                          reason="the request is not well formed")
        answer = previous_invalid(request, exc)
        response: Response = await answer if inspect.isawaitable(answer) else answer
        return response

    previous_unavailable = app.exception_handlers.get(DatabaseUnavailableError, unavailable)

    async def database_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DatabaseUnavailableError)
        path = request.url.path
        if path == CONSOLE or path.startswith(HOME):
            page = render(request, "refused.html", 503, status=503,
                          reason="The database is unavailable; try again in a moment.")
            page.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return page
        answer = previous_unavailable(request, exc)
        response: Response = await answer if inspect.isawaitable(answer) else answer
        return response

    app.add_exception_handler(StarletteHTTPException, handler)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(DatabaseUnavailableError, database_unavailable)
    app.mount(f"{CONSOLE}/static", StaticFiles(directory=str(_FOLDER / "static")),
              name="console-static")
