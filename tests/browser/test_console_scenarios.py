"""In a real browser, on the whole service (SQLite and PostgreSQL): a patient known at two
sites (ADT^A28 from two establishments through the MLLP listener, a study from each site
stored with storescu) is found by a clinician by name and by IPP, and the person page shows
both sites' studies; an identity-vigilance officer decides the review task a doubtful pair
opened, sees the decision in the person's history, undoes it and sees the undo; a clinician
is refused the review queue and the audit; every console page passes axe-core; the skip link
and the search form are reached with Tab.

With ``MPI_TEST_SCREENSHOTS=DIR`` (for instance ``docs/images``), the last test writes the
documentation's screenshots of the main pages (and of OHIF showing an image) into DIR.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mpi.model import Identifier
from tests.browser.conftest import assert_accessible, log_in
from tests.conftest import DATABASE_KINDS, fresh_database
from tests.dicom_objects import UNCOMPRESSED_CT, UNCOMPRESSED_MR, relabel
from tests.feeds import Peer, segments
from tests.hl7_messages import registration, valid_ins
from tests.integration.test_dicom_archive import store, write
from tests.service import RunningService, start_service

CHRU_STUDY, ICL_STUDY = "1.2.826.0.1.3680043.10.55.1", "1.2.826.0.1.3680043.10.55.2"
ODILE_INS = valid_ins("2480354395001")  # a woman born in March 1948 in Nancy
SCREENSHOTS = os.environ.get("MPI_TEST_SCREENSHOTS")
MAX_SHOT = 200_000  # bytes: small enough for a README


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    """The service with Odile LAMBERT known at CHRU and ICL (one study at each) and a pair of
    twins, Claire and Hélène ZIMMERMANN, whom the matcher cannot tell apart: a review task.
    With MPI_TEST_SCREENSHOTS, OHIF is served too (the viewer's screenshot)."""
    folder = tmp_path_factory.mktemp("scenarios")
    viewer: dict[str, Any] = {}
    if SCREENSHOTS and request.param == "sqlite":
        viewer = {"viewer_dir": request.getfixturevalue("viewer_dir"), "viewer_port": 0}
    running = start_service(fresh_database(request, request.param, folder), folder / "data",
                            **viewer)
    try:
        with Peer(running.mllp_port) as peer:
            for message in (
                    registration("CHRU", "700001", "LAMBERT", "Odile", "19480309", "F",
                                 ins=ODILE_INS),
                    registration("ICL", "I700001", "LAMBERT", "Odile", "19480309", "F",
                                 ins=ODILE_INS),
                    registration("CHRU", "880001", "ZIMMERMANN", "Claire", "19750614", "F"),
                    registration("ICL", "I880002", "ZIMMERMANN", "Hélène", "19750614", "F")):
                reply = segments(peer.send(message))
                assert reply["MSA"][0][1] == "AA", reply
        sent = folder / "sent"
        sent.mkdir()
        store(running, "CHRU", [write(sent, UNCOMPRESSED_CT, relabel(
            UNCOMPRESSED_CT, patient_id="700001", study=CHRU_STUDY, series=f"{CHRU_STUDY}.1",
            sop=f"{CHRU_STUDY}.1.1", StudyDescription="SCANNER THORAX"), "chru")])
        store(running, "ICL", [write(sent, UNCOMPRESSED_MR, relabel(
            UNCOMPRESSED_MR, patient_id="I700001", study=ICL_STUDY, series=f"{ICL_STUDY}.1",
            sop=f"{ICL_STUDY}.1.1", StudyDescription="IRM CEREBRALE"), "icl")])
        yield running
    finally:
        running.stop()


def _person_id(service: RunningService, authority: str, value: str) -> int:
    from mpi.queries import resolve_person

    c = service.container
    with c.uow_factory(read_only=True) as uow:
        person = resolve_person(uow, c.registry, Identifier(authority, value))
    assert person is not None and person.id is not None
    return person.id


def _text(shown: Any) -> str:
    """What a locator shows, spaces squeezed."""
    return re.sub(r"\s+", " ", shown.inner_text())


def test_a_clinician_finds_the_patient_by_name_and_ipp_and_sees_both_sites_studies(
        page: Any, site: RunningService) -> None:
    log_in(page, site, "dr.timeline", "clinician", establishment="CHRU")
    person_id = _person_id(site, "CHRU", "700001")
    assert _person_id(site, "ICL", "I700001") == person_id  # one person, two sites
    for query in ("lambert odile", "I700001"):
        page.goto(site.http_base + "/console/persons")
        page.fill("#q", query)
        page.press("#q", "Enter")
        page.wait_for_url(re.compile(r".*/console/persons\?q=.*"))
        found = page.locator(f'main a[href="/console/persons/{person_id}"]')
        assert found.count() == 1, (query, _text(page.locator("main")))
    found.click()
    page.wait_for_url(f"**/console/persons/{person_id}")
    records = _text(page.locator("section[aria-labelledby=records-title]"))
    assert "CHRU" in records and "700001" in records and "I700001" in records
    assert records.count(f"{ODILE_INS} (qualifiée)") == 2, records
    studies = page.locator("section[aria-labelledby=studies-title]")
    shown = _text(studies)
    assert "SCANNER THORAX" in shown and "IRM CEREBRALE" in shown, shown
    for uid in (CHRU_STUDY, ICL_STUDY):
        assert studies.locator(f'a[href="/console/viewer/{uid}"]').count() == 1
        thumbnail = studies.locator(f'img[src="/dicomweb/studies/{uid}/thumbnail"]')
        thumbnail.wait_for()
        # the thumbnail arrives (rendered by the service) and is an image, not a broken icon
        page.wait_for_function("(img) => img.complete", arg=thumbnail.element_handle())
        assert page.evaluate("(img) => img.naturalWidth > 0", thumbnail.element_handle())
    reads = [e for e in site.container.audit.search(actor="user:dr.timeline", limit=500)
             if e.channel == "console" and e.action.value == "read"]
    assert any(e.persons == (person_id,) for e in reads)


def test_vigilance_links_a_doubtful_pair_sees_it_in_the_history_and_undoes_it(
        page: Any, site: RunningService) -> None:
    log_in(page, site, "iv.decide", "identity-vigilance")
    page.goto(site.http_base + "/console/review")
    row = page.locator("main tr", has_text="ZIMMERMANN").first
    row.locator('a[href^="/console/review/"]').first.click()
    page.wait_for_url(re.compile(r".*/console/review/\d+$"))
    task = page.url.rsplit("/", 1)[1]
    compared = _text(page.locator("main"))
    assert "Claire" in compared and "Hélène" in compared
    for field, left, right in (("family_name", "ZIMMERMANN", "ZIMMERMANN"),
                               ("given_name", "Hélène", "Claire")):
        # each comparison beside the values it compared, and its weight
        row = page.locator("table.compare tbody tr").filter(
            has=page.locator("th", has_text=re.compile(rf"^{field}\b")))
        cells = row.locator("td").all_inner_texts()
        assert cells[:2] == [left, right] and float(cells[3]), (field, cells)
    page.check("#d-link")
    page.fill("#reason", "même patiente, prénom d'usage vérifié au guichet")
    page.locator("form[action$='/decision'] [type=submit]").click()
    page.wait_for_url(re.compile(r".*/console/persons/\d+$"))
    person_url = page.url
    history = page.locator("section[aria-labelledby=history-title]")
    entry = history.locator("tr", has=page.locator(f"form[action='/console/review/{task}/undo']"))
    assert entry.count() == 1, _text(history)
    decided = _text(entry)
    assert "link" in decided and "user:iv.decide" in decided, decided
    assert "prénom d'usage vérifié au guichet" in decided, decided
    assert history.locator("tr", has_text="rattachement: ICL|I880002 (manual)").count() == 1
    records = _text(page.locator("section[aria-labelledby=records-title]"))
    assert "880001" in records and "I880002" in records  # the two records, one person now

    entry.locator("input[name=reason]").fill("erreur: deux jumelles")
    entry.locator("[type=submit]").click()
    page.wait_for_url(f"**/console/review/{task}")
    assert page.locator("#d-link").count() == 1  # the task is open again
    page.goto(person_url)
    history = _text(page.locator("section[aria-labelledby=history-title]"))
    assert "décision annulée" in history and "erreur: deux jumelles" in history, history
    changes = [e.detail["decision"] for e in site.container.audit.search(
        actor="user:iv.decide", limit=500) if e.channel == "console"
        and e.action.value == "update"]
    assert changes == ["undo", "link"]  # newest first


def test_a_clinician_is_refused_the_review_queue_and_the_audit(
        page: Any, site: RunningService) -> None:
    log_in(page, site, "dr.refused", "clinician")
    for path in ("/console/review", "/console/audit"):
        answer = page.goto(site.http_base + path)
        assert answer is not None and answer.status == 403, path
        assert page.locator("h1").inner_text() == "Non autorisé"
        assert "may not" in page.locator("[role=alert]").inner_text()
        assert page.locator(f'nav a[href="{path}"]').count() == 0  # not offered either
        assert_accessible(page)
    refusals = [e for e in site.container.audit.search(actor="user:dr.refused", limit=50)
                if e.action.value == "alert"]
    assert len(refusals) == 2  # each refusal is in the trail


def _open_task(page: Any, site: RunningService) -> str:
    page.goto(site.http_base + "/console/review")
    link = page.locator('main a[href^="/console/review/"]').first
    href: str = link.get_attribute("href")
    return href


def test_every_console_page_passes_the_accessibility_checker(
        page: Any, site: RunningService) -> None:
    log_in(page, site, "all.pages", "clinician", "identity-vigilance", "dim", "archivist",
           "auditor", "admin")
    person_id = _person_id(site, "CHRU", "700001")
    task = _open_task(page, site)
    # The lifecycle's tables with a row each: a hold placed and a proposal made in the page.
    page.goto(site.http_base + "/console/lifecycle")
    page.fill("#hold-study", CHRU_STUDY)
    page.fill("#hold-reason", "contentieux en cours")
    page.fill("#hold-ref", "TJ Nancy 26/0042")
    page.locator("form[action='/console/lifecycle/holds'] [type=submit]").click()
    page.wait_for_url("**/console/lifecycle")
    page.select_option("#prop-est", "ICL")
    page.locator("form[action='/console/lifecycle/proposals'] [type=submit]").click()
    page.wait_for_url("**/console/lifecycle")
    holds = _text(page.locator("main"))
    assert "TJ Nancy 26/0042" in holds, holds
    proposal = page.locator('main a[href^="/console/lifecycle/proposals/"]').first
    pages = [str(proposal.get_attribute("href")), "/console/", "/console/persons?q=LAMBERT", f"/console/persons/{person_id}",
             "/console/review", task, "/console/indicators", "/console/lifecycle",
             "/console/audit", f"/console/audit/persons/{person_id}", "/console/interfaces",
             "/console/users", "/console/clients", "/console/persons?q=LAMBERT&lang=en"]
    for path in pages:
        answer = page.goto(site.http_base + path)
        assert answer is not None and answer.status == 200, path
        try:
            assert_accessible(page)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from None


def test_the_skip_link_and_the_search_form_are_reached_with_the_keyboard(
        page: Any, site: RunningService) -> None:
    log_in(page, site, "dr.keyboard", "clinician")
    page.goto(site.http_base + "/console/persons")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip"
    assert page.locator("a.skip").is_visible()  # shown when it has the focus
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "q"  # the first field
    page.keyboard.type("I700001")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.type") == "submit"
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/persons?q=I700001")
    person_id = _person_id(site, "CHRU", "700001")
    assert page.locator(f'main a[href="/console/persons/{person_id}"]').count() == 1


def _shoot(page: Any, folder: Path, name: str, colours: int = 256) -> Path:
    """The page (its first 1,600 pixels) as a PNG of 256 colours: small enough for a README."""
    raw = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    raw = raw.crop((0, 0, raw.width, min(raw.height, 1600)))
    path = folder / f"{name}.png"
    raw.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


@pytest.mark.skipif(not SCREENSHOTS, reason="MPI_TEST_SCREENSHOTS=DIR asks for screenshots")
def test_screenshots_of_the_main_pages_for_the_documentation(
        page: Any, site: RunningService, request: pytest.FixtureRequest) -> None:
    if "postgresql" in request.node.callspec.id:
        pytest.skip("the documentation's screenshots are taken once, on SQLite")
    assert SCREENSHOTS is not None
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    log_in(page, site, "m.martin", "clinician", "identity-vigilance", "dim", "archivist")
    person_id = _person_id(site, "CHRU", "700001")
    task = _open_task(page, site)
    written = []
    for name, path in (("person", f"/console/persons/{person_id}"), ("review-task", task),
                       ("indicators", "/console/indicators"), ("lifecycle", "/console/lifecycle")):
        page.goto(site.http_base + path)
        page.wait_for_load_state("networkidle")
        written.append(_shoot(page, folder, name))
    page.goto(site.http_base + f"/console/viewer/{CHRU_STUDY}")
    page.wait_for_url(re.compile(r".*/viewer\?StudyInstanceUIDs=.*"))
    canvas = page.locator("canvas.cornerstone-canvas").first
    canvas.wait_for(state="visible")
    for _ in range(60):  # the image arrives after the page
        grey = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"))
        if grey.std() > 10:
            break
        page.wait_for_timeout(500)
    assert grey.std() > 10, "the viewport stayed blank"
    for hint in ("Tout passer", "Confirm and hide"):  # OHIF's first-visit tour and banner
        button = page.get_by_text(hint, exact=True)
        if button.count():
            button.first.click()
    page.wait_for_timeout(1000)  # the overlays and the thumbnails
    written.append(_shoot(page, folder, "viewer", colours=128))  # grey levels, mostly
    for path in written:
        assert 0 < path.stat().st_size < MAX_SHOT, (path, path.stat().st_size)
