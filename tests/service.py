"""Running the whole service (`mpi serve`'s servers) in a background thread, for tests."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from adapters.bootstrap import bootstrap
from adapters.container import Container
from adapters.serve import run_services
from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"

# What a system may do when a test does not say: everything, in its establishment's domain.
ALL_SCOPES = "system/*.cruds"
PASSWORD = "correct horse battery staple"
_names = itertools.count(1)


class RunningService:
    """The service on loopback with system-chosen ports; stop() shuts it down cleanly."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.mllp_port = 0
        self.http_port = 0
        self.ports: dict[str, int] = {}  # every bound port by listener (mllp_tls, https...)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.clients: dict[str, str] = {}  # the client ids of token(), by name
        self._people: dict[str, httpx.Client] = {}  # the sessions of person(), by name

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(mllp_port: int, http_port: int) -> None:
                self.mllp_port, self.http_port = mllp_port, http_port
                self._ready.set()

            await run_services(self.container, self._stop, ready, self.ports)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    def start(self) -> RunningService:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the service did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        for session in self._people.values():
            session.close()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.container.close()

    @property
    def dicom_port(self) -> int:
        """The DICOM port (AE title VNA) the service listens on."""
        return self.container.dicom.bound_port or 0

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def token(self, scopes: str = ALL_SCOPES, establishment: str | None = None,
              name: str | None = None) -> str:
        """An access token got the way a system gets one: a client registered (as
        `mpi client add` does), then client_credentials with its secret at /oauth/token.
        The trail names it ``client:CLIENT_ID`` (see actor())."""
        name = name or f"test-client-{next(_names)}"
        new = self.container.auth.add_client(name, scopes, establishment)
        assert new.secret is not None
        self.clients[name] = new.client.client_id
        answer = httpx.post(self.http_base + "/oauth/token",
                            data={"grant_type": "client_credentials", "scope": scopes},
                            auth=(new.client.client_id, new.secret))
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    def actor(self, name: str) -> str:
        """How the access trail names the client that token() registered under ``name``."""
        return f"client:{self.clients[name]}"

    def bearer(self, scopes: str = ALL_SCOPES, establishment: str | None = None,
               name: str | None = None) -> dict[str, str]:
        """The Authorization header of a fresh token (see token())."""
        return {"Authorization": "Bearer " + self.token(scopes, establishment, name)}

    def person(self, name: str, *roles: str,
               establishment: str | None = None) -> httpx.Client:
        """An HTTP client (base URL: the service's) logged in as a person holding ``roles``,
        the way a browser logs in (the console's form with its CSRF cookie); its changes
        carry the session's CSRF token. One session per name, closed by stop()."""
        if name in self._people:
            return self._people[name]
        self.container.auth.add_user(name, PASSWORD, tuple(roles), establishment)
        client = httpx.Client(base_url=self.http_base, timeout=30)
        self._people[name] = client
        form = client.get(self.http_base + "/console/login")
        assert form.status_code == 200, form.text
        logged = client.post(self.http_base + "/console/login", data={
            "username": name, "password": PASSWORD,
            "login_csrf": form.cookies["mpi_login"]})
        assert logged.status_code == 303, logged.text
        session = client.get(self.http_base + "/console/session")
        assert session.status_code == 200, session.text
        client.headers["X-CSRF-Token"] = session.json()["csrf"]
        return client


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        host="127.0.0.1", mllp_port=0, http_port=0, data_dir=data_dir,
        database_url=database_url, notify_interval=0.05, notify_timeout=2.0,
        notify_max_backoff=0.5, dispatch_interval=0.05, workers=0, http_workers=0,
        dicom_port=0,
        archive_fsync=False,
    )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def start_service(database_url: str, data_dir: Path, **overrides: object) -> RunningService:
    container = bootstrap(make_settings(database_url, data_dir, **overrides), migrate=True)
    return RunningService(container).start()


# -- security tests: a small web server of the test's own, signed JWTs ---------------------



class LoopbackServer:
    """A real HTTP server on loopback, in a thread, answering with ``answer(method, path,
    query, form, headers)`` → (status, headers, body): a client's JWK set, a small identity
    provider. ``requests`` keeps what it was asked (method, path), in order."""

    def __init__(self, answer: Answer) -> None:
        import http.server
        from urllib.parse import parse_qs, urlsplit

        outer = self
        self.requests: list[tuple[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode("utf-8") if length else ""
                form = {k: v[0] for k, v in parse_qs(raw).items()}
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                outer.requests.append((method, parts.path))
                status, headers, body = answer(method, parts.path, query, form,
                                               dict(self.headers.items()))
                data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Type" not in headers:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the tests read the service's own logs

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


Answer = Callable[[str, str, dict[str, str], dict[str, str], dict[str, str]],
                  tuple[int, dict[str, str], object]]


def b64url(data: bytes | dict[str, object]) -> str:
    """Base64url without padding, of bytes or of a JSON object (a JWT's parts)."""
    import base64

    raw = data if isinstance(data, bytes) else json.dumps(data).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unsigned_jwt(claims: dict[str, object], **header: object) -> str:
    """A JWT with ``alg: none`` and no signature: what no one must ever accept."""
    return f"{b64url({'alg': 'none', 'typ': 'JWT', **header})}.{b64url(claims)}."


def jwt_parts(token: str) -> tuple[dict[str, object], dict[str, object]]:
    """The header and claims of a JWT, read without checking anything."""
    import base64

    def part(text: str) -> dict[str, object]:
        decoded: dict[str, object] = json.loads(
            base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        return decoded

    header, payload = token.split(".")[:2]
    return part(header), part(payload)


def cheap_password_hashing(monkeypatch: Any) -> None:
    """Argon2id with the smallest cost, for tests that hash many secrets: the same hashes
    and checks as in production (``$argon2id$`` strings, verified for real), only faster.
    ``monkeypatch`` is pytest's fixture."""
    from argon2 import PasswordHasher

    from adapters.auth import passwords

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(passwords, "_HASHER", cheap)
    monkeypatch.setattr(passwords, "_DUMMY", cheap.hash("no account has this secret"))


def service_log_records(records: list[Any]) -> list[Any]:
    """The log records the service wrote, among those pytest's ``caplog`` heard: without
    the test's own HTTP client (httpx's debug lines show the cookies the service sets), and
    without uvicorn's access log, which the service turns off (pytest attaches its handler
    to non-propagating loggers anyway); the service's own access log is ``mpi.http``'s one
    line per request, naming the route's template, never the path and query."""
    import logging
    import threading

    access = logging.getLogger("uvicorn.access")
    assert access.propagate is False  # turned off by the service (access_log=False)
    mine = threading.get_ident()
    return [r for r in records if r.name != "uvicorn.access"
            and not (r.thread == mine and r.name.startswith(("httpx", "httpcore")))]


def child_pids(pid: int) -> set[int]:
    """The processes ``pid`` started (all its threads' children), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def is_alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting for its parent does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"
