"""In a real browser: a person logs in through the console, opens a study a modality stored
with storescu in OHIF from the console's link, and the viewport draws the image (an
uncompressed one and a JPEG-LS one); a person without the role is refused the page; the
login page and the home page pass the accessibility checker."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import assert_accessible, log_in
from tests.dicom_objects import JPEGLS_LOSSLESS, UNCOMPRESSED_CT, relabel
from tests.integration.test_dicom_archive import register, store, write
from tests.service import RunningService

CT_STUDY, JLS_STUDY = "1.2.250.1.999.54.9.11", "1.2.250.1.999.54.9.12"


def _store_studies(service: RunningService, folder: Path) -> None:
    register(service, "CHRU", "100234")
    store(service, "CHRU", [
        write(folder, UNCOMPRESSED_CT, relabel(UNCOMPRESSED_CT, patient_id="100234",
              study=CT_STUDY, series=f"{CT_STUDY}.1", sop=f"{CT_STUDY}.1.1"), "ct"),
        write(folder, JPEGLS_LOSSLESS, relabel(JPEGLS_LOSSLESS, patient_id="100234",
              study=JLS_STUDY, series=f"{JLS_STUDY}.1", sop=f"{JLS_STUDY}.1.1"), "jls"),
    ])


def _viewport_pixels(page: Any) -> np.ndarray:
    """What the first viewport's canvas shows, as grey levels (read from a screenshot of
    the canvas: a WebGL canvas gives nothing back to a script once it has been drawn)."""
    canvas = page.locator("canvas.cornerstone-canvas").first
    canvas.wait_for(state="visible")
    shot = canvas.screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("L"))


def test_a_person_logs_in_and_the_login_and_home_pages_are_accessible(
        page: Any, service: RunningService) -> None:
    page.goto(service.http_base + "/console/login")
    assert_accessible(page)
    log_in(page, service, "dr.login", "clinician", establishment="CHRU")
    assert page.url.endswith("/console/")
    assert "dr.login" in page.content()
    assert_accessible(page)


@pytest.mark.parametrize("study", [CT_STUDY, JLS_STUDY], ids=["uncompressed", "jpeg-ls"])
def test_a_stored_study_opens_in_ohif_from_the_console_and_draws_its_image(
        page: Any, viewer_service: RunningService, tmp_path: Path, study: str) -> None:
    _store_studies(viewer_service, tmp_path)
    log_in(page, viewer_service, "dr.ohif", "clinician", establishment="CHRU")
    page.goto(viewer_service.http_base + f"/console/viewer/{study}")
    viewer_port = viewer_service.ports["viewer"]
    page.wait_for_url(f"http://127.0.0.1:{viewer_port}/viewer?StudyInstanceUIDs={study}*")
    drawn = None
    for _ in range(60):  # the image arrives after the page: wait for it to be drawn
        pixels = _viewport_pixels(page)
        if pixels.std() > 10:
            drawn = pixels
            break
        page.wait_for_timeout(500)
    Image.fromarray(pixels).save(tmp_path / "viewport.png")  # kept beside the test
    assert drawn is not None, "the viewport stayed blank"
    assert len(np.unique(drawn)) > 32  # an image's grey levels, not a blank or a message
    trail = viewer_service.container.audit.search(actor="user:dr.ohif", limit=500)
    assert any(e.channel == "dicomweb" and e.action.value == "retrieve" for e in trail)


def test_a_person_without_the_role_is_refused_the_viewer_page(
        page: Any, service: RunningService, tmp_path: Path) -> None:
    _store_studies(service, tmp_path)
    log_in(page, service, "ms.audit", "auditor")
    answer = page.goto(service.http_base + f"/console/viewer/{CT_STUDY}")
    assert answer is not None and answer.status == 403
    assert page.locator("[role=alert]").inner_text().startswith("user:ms.audit may not")
    assert_accessible(page)
