"""Browser tests: Playwright driving Debian's Chromium (``/usr/bin/chromium``, or
``MPI_TEST_CHROMIUM``) against the whole service on loopback, on SQLite and PostgreSQL.

What the scenarios share:
- ``browser``: one headless Chromium per test session (the tests skip only when it is not
  installed; `.ci/run` installs it);
- ``page``: a fresh browser context per test; when the test fails, a screenshot of each page
  it opened is written under the test's temporary folder (``screenshots/``);
- ``viewer_service``: the service with OHIF installed (``MPI_TEST_VIEWER_DIR``, default
  ``tests/browser/viewer``, which `.ci/run` fills with `mpi viewer install --dir`, and this
  fixture too when it is empty);
- ``log_in(page, service, name, *roles)``: a person logging in through ``/console/login``;
- ``assert_accessible(page)``: axe-core (``tests/browser/node_modules``, from
  ``tests/browser/package.json``: `npm ci --prefix tests/browser`, run here when missing)
  injected into the page, no serious or critical violation allowed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service import PASSWORD, RunningService, start_service

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("MPI_TEST_CHROMIUM", "/usr/bin/chromium")
VIEWER_DIR = Path(os.environ.get("MPI_TEST_VIEWER_DIR", HERE / "viewer"))
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
# Software WebGL: the test machines have no GPU, and OHIF draws its viewports with WebGL.
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for the tests of one module. Not for the session: while Playwright's sync
    API runs, its event loop counts as running in this thread, and every later test that
    calls asyncio.run() (the jobs, the MLLP client, `mpi hl7 send`) would be refused."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium is not installed ({CHROMIUM}; apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="fr-FR")
    context.set_default_timeout(30_000)
    opened = context.new_page()
    yield opened
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        folder = tmp_path / "screenshots"
        folder.mkdir(exist_ok=True)
        for number, each in enumerate(context.pages, 1):
            each.screenshot(path=str(folder / f"page-{number}.png"), full_page=True)
        print(f"screenshots of the failed test's pages: {folder}")
    context.close()


@pytest.fixture(scope="session")
def viewer_dir() -> Path:
    """OHIF, installed here the way `mpi viewer install --dir` does (fetched when missing;
    its configuration rewritten otherwise)."""
    from adapters.viewer import ViewerInstallError, install

    try:
        install(VIEWER_DIR)
    except ViewerInstallError as exc:
        pytest.fail(f"OHIF is not installed in {VIEWER_DIR} and could not be: {exc.message}")
    return VIEWER_DIR


@pytest.fixture
def viewer_service(database_url: str, tmp_path: Path, viewer_dir: Path
                   ) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data", viewer_dir=viewer_dir,
                            viewer_port=0)
    yield running
    running.stop()


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path / "data")
    yield running
    running.stop()


def log_in(page: Any, service: RunningService, name: str, *roles: str,
           establishment: str | None = None) -> None:
    """A person with ``roles`` logs in through the console's form, as anyone would."""
    service.container.auth.add_user(name, PASSWORD, tuple(roles), establishment)
    page.goto(service.http_base + "/console/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.locator("form [type=submit]").first.click()
    page.wait_for_url("**/console/**")
    assert "/console/login" not in page.url, page.content()


def _install_axe() -> None:
    """axe-core at the version tests/browser/package-lock.json pins (`npm ci`)."""
    npm = shutil.which("npm")
    done = subprocess.run([npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund"],
                          capture_output=True, text=True, timeout=600,
                          check=False) if npm else None
    if done is None or done.returncode != 0 or not AXE.is_file():
        pytest.fail(f"axe-core is not installed and `npm ci --prefix {HERE}` failed: "
                    f"{done.stderr[-500:] if done else 'npm is not installed'}")


def assert_accessible(page: Any) -> None:
    """axe-core in the page: no serious or critical violation."""
    if not AXE.is_file():
        _install_axe()
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    results = page.evaluate("async () => await window.axe.run(document)")
    serious = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == [], "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} — "
        f"{[n['target'] for n in v['nodes']][:5]}" for v in serious)
