"""The console: the pages people use in a browser (/console).

A person logs in with a local account (name and password) or through the configured OpenID
Connect provider (authorization code with PKCE); the console keeps a session cookie
(``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the console is reached over TLS) and every
change made in a session carries its CSRF token (checked for every route by
:func:`adapters.http.deps.deny_anonymous`). A page asked for without a session sends the
browser to the login page.

Pages are rendered on the server (Jinja2): they work without JavaScript, and nothing comes
from another site.
"""

from __future__ import annotations

from fastapi import APIRouter

from adapters.console import administration, oversight, pages, patients
from adapters.console.pages import install_login_redirect

router = APIRouter()
router.include_router(pages.router)
for part in (patients, oversight, administration):
    router.include_router(part.router)

__all__ = ["router", "install_login_redirect"]
