"""DICOMweb as a web viewer (OHIF) uses it, over real HTTP on SQLite and PostgreSQL: frames
as stored with their transfer syntax in each part, metadata with BulkDataURIs, QIDO-RS
paging and fields, rendered images and thumbnails, the cross-origin headers; and the viewer's
own origin: OHIF's files with their client routes, DICOMweb on the same origin with the
console's session, the console's link that opens a study."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from adapters.viewer.install import ViewerInstallError, _unpack, app_config, installed
from tests.dicom_objects import (
    JPEG2000_LOSSLESS,
    JPEGLS_LOSSLESS,
    RLE,
    UNCOMPRESSED_CT,
    bundled,
    read,
    relabel,
)
from tests.integration.test_dicom_archive import (  # noqa: F401
    CHRU_STUDY,
    MRUN_STUDY,
    register,
    store,
    two_sites,
    write,
)
from tests.service import RunningService, start_service

READER = "system/ImagingStudy.rs"
ANY_SYNTAX = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
CT_URL = f"/dicomweb/studies/{CHRU_STUDY}/series/{CHRU_STUDY}.1/instances/{CHRU_STUDY}.1.1"
J2K_URL = f"/dicomweb/studies/{CHRU_STUDY}/series/{CHRU_STUDY}.2/instances/{CHRU_STUDY}.2.1"
RLE_URL = f"/dicomweb/studies/{MRUN_STUDY}/series/{MRUN_STUDY}.2/instances/{MRUN_STUDY}.2.1"
JLS_URL = f"/dicomweb/studies/{MRUN_STUDY}/series/{MRUN_STUDY}.2/instances/{MRUN_STUDY}.2.2"


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    """The service with a viewer folder (a small stand-in of OHIF's dist) and one CORS
    origin configured."""
    viewer = tmp_path / "viewer"
    (viewer / "dist" / "assets").mkdir(parents=True)
    (viewer / "dist" / "index.html").write_text("<!doctype html><title>OHIF</title>")
    (viewer / "dist" / "app-config.js").write_text(app_config())
    (viewer / "dist" / "assets" / "app.js").write_text("console.log('ohif')")
    (viewer / "installed.json").write_text(json.dumps({"version": "test"}))
    running = start_service(database_url, tmp_path / "data", viewer_dir=viewer, viewer_port=0,
                            cors_origins=["https://pacs.chru.invalid"])
    yield running
    running.stop()


def parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """The (Content-Type, body) of each part of a multipart answer."""
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    found = []
    for part in response.content.split(f"--{boundary}".encode())[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        kind = next(line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")
                    if line.lower().startswith("content-type:"))
        found.append((kind, body[:-2]))
    return found


@pytest.mark.parametrize(("url", "name", "media"), [
    (CT_URL, UNCOMPRESSED_CT, "application/octet-stream"),
    (J2K_URL, JPEG2000_LOSSLESS, "image/jp2"),
    (RLE_URL, RLE, "image/dicom-rle"),
    (JLS_URL, JPEGLS_LOSSLESS, "image/jls"),
])
def test_frames_are_given_as_stored_with_their_transfer_syntax_in_each_part(
        two_sites: RunningService, url: str, name: str, media: str) -> None:
    original = read(bundled(name))
    syntax = str(original.file_meta.TransferSyntaxUID)
    answer = httpx.get(two_sites.http_base + url + "/frames/1",
                       headers={**two_sites.bearer(READER), **ANY_SYNTAX})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("multipart/related")
    [(kind, body)] = parts(answer)
    assert kind == f"{media}; transfer-syntax={syntax}"
    if media == "application/octet-stream":
        assert body == original.PixelData
    else:
        from pydicom.encaps import generate_frames
        assert body == next(generate_frames(original.PixelData, number_of_frames=1))


def test_frames_asked_uncompressed_are_decoded_to_the_original_pixels(
        two_sites: RunningService) -> None:
    original = read(bundled(JPEG2000_LOSSLESS)).pixel_array
    answer = httpx.get(two_sites.http_base + J2K_URL + "/frames/1",
                       headers={**two_sites.bearer(READER),
                                "Accept": "multipart/related; type=application/octet-stream"})
    assert answer.status_code == 200, answer.text
    [(kind, body)] = parts(answer)
    assert kind == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    assert np.array_equal(np.frombuffer(body, dtype=original.dtype.newbyteorder("<"))
                          .reshape(original.shape), original)


def test_bad_frame_requests_get_clear_answers(two_sites: RunningService) -> None:
    headers = {**two_sites.bearer(READER), **ANY_SYNTAX}
    missing = httpx.get(two_sites.http_base + CT_URL + "/frames/2", headers=headers)
    assert missing.status_code == 404 and "1 frame" in missing.json()["detail"]
    assert httpx.get(two_sites.http_base + CT_URL + "/frames/x", headers=headers).status_code == 400
    assert httpx.get(two_sites.http_base + CT_URL + "/frames/0", headers=headers).status_code == 400
    other = httpx.get(two_sites.http_base + J2K_URL + "/frames/1", headers={
        **two_sites.bearer(READER),
        "Accept": "multipart/related; type=application/octet-stream; "
                  "transfer-syntax=1.2.840.10008.1.2.4.50"})
    assert other.status_code == 406
    nobody = httpx.get(two_sites.http_base + CT_URL + "/frames/1")
    assert nobody.status_code == 401


def test_metadata_gives_bulk_data_uris_that_answer_and_patients_in_the_askers_domain(
        two_sites: RunningService) -> None:
    headers = two_sites.bearer(READER, establishment="MRUN")
    answer = httpx.get(two_sites.http_base + f"/dicomweb/studies/{CHRU_STUDY}/series/"
                       f"{CHRU_STUDY}.2/metadata", headers=headers)
    assert answer.status_code == 200, answer.text
    [header] = answer.json()
    assert header["00100020"]["Value"] == ["M5678"]  # the CHRU's study, under the MRUN's IPP
    uri = header["7FE00010"]["BulkDataURI"]
    assert uri == J2K_URL + "/bulkdata/7FE00010" and "InlineBinary" not in header["7FE00010"]
    bulk = httpx.get(two_sites.http_base + uri, headers={**headers, **ANY_SYNTAX})
    assert bulk.status_code == 200
    [(kind, _)] = parts(bulk)
    assert kind.endswith("transfer-syntax=1.2.840.10008.1.2.4.90")
    unknown = httpx.get(two_sites.http_base + J2K_URL + "/bulkdata/00091001", headers=headers)
    assert unknown.status_code == 404


def test_qido_pages_with_limit_and_offset_and_adds_included_fields(
        two_sites: RunningService) -> None:
    headers = two_sites.bearer(READER)
    url = two_sites.http_base + "/dicomweb/studies"
    every = httpx.get(url, headers=headers).json()
    assert len(every) == 2
    first = httpx.get(url, params={"limit": 1}, headers=headers).json()
    second = httpx.get(url, params={"limit": 1, "offset": 1}, headers=headers).json()
    assert [first[0]["0020000D"], second[0]["0020000D"]] == [e["0020000D"] for e in every]
    assert httpx.get(url, params={"offset": 2}, headers=headers).json() == []
    wanted = httpx.get(url, params=[("includefield", "StudyID,00081030"),
                                    ("includefield", "ReferringPhysicianName")],
                       headers=headers).json()
    assert all({"00200010", "00081030", "00080090"} <= set(a) for a in wanted)
    assert httpx.get(url, params={"includefield": "all"}, headers=headers).status_code == 200
    for bad in ({"offset": "-1"}, {"limit": "0"}, {"includefield": "NoSuchAttribute"},
                {"fuzzymatching": "maybe"}):
        refused = httpx.get(url, params=bad, headers=headers)
        assert refused.status_code == 400, bad


def test_fuzzy_matching_matches_each_name_component_as_a_prefix(
        two_sites: RunningService) -> None:
    headers = two_sites.bearer(READER)
    url = two_sites.http_base + "/dicomweb/studies"
    assert httpx.get(url, params={"PatientName": "DUP^HEL"}, headers=headers).json() == []
    fuzzy = httpx.get(url, params={"PatientName": "dup^hel", "fuzzymatching": "true"},
                      headers=headers).json()
    assert {a["0020000D"]["Value"][0] for a in fuzzy} == {CHRU_STUDY, MRUN_STUDY}


def _image(response: httpx.Response, kind: str) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == kind
    image = Image.open(io.BytesIO(response.content))
    assert image.format == kind.split("/")[1].upper()
    return image


def test_rendered_and_thumbnails_are_windowed_images_at_every_level(
        two_sites: RunningService) -> None:
    headers = two_sites.bearer(READER)
    base = two_sites.http_base
    for url in (CT_URL, J2K_URL, RLE_URL, JLS_URL):
        image = _image(httpx.get(base + url + "/rendered", headers=headers), "image/jpeg")
        assert np.asarray(image).std() > 5  # an image, not a flat grey
    png = _image(httpx.get(base + CT_URL + "/rendered", headers={
        **headers, "Accept": "image/png"}), "image/png")
    narrow = _image(httpx.get(base + CT_URL + "/rendered", params={"window": "0.5,1"},
                              headers={**headers, "Accept": "image/png"}), "image/png")
    assert not np.array_equal(np.asarray(png), np.asarray(narrow))
    assert set(np.unique(np.asarray(narrow))) <= {0, 255}  # a one-unit window: black or white
    thumb = _image(httpx.get(base + f"/dicomweb/studies/{CHRU_STUDY}/thumbnail",
                             headers=headers), "image/jpeg")
    assert max(thumb.size) <= 128
    sized = _image(httpx.get(base + f"/dicomweb/studies/{CHRU_STUDY}/series/{CHRU_STUDY}.1/"
                             "thumbnail", params={"viewport": "32,32"}, headers=headers),
                   "image/jpeg")
    assert max(sized.size) == 32
    _image(httpx.get(base + CT_URL + "/thumbnail", headers=headers), "image/jpeg")
    _image(httpx.get(base + CT_URL + "/frames/1/rendered", headers=headers), "image/jpeg")
    study = httpx.get(base + f"/dicomweb/studies/{MRUN_STUDY}/rendered", headers=headers)
    assert [kind for kind, _ in parts(study)] == ["image/jpeg"] * 3
    series = httpx.get(base + f"/dicomweb/studies/{MRUN_STUDY}/series/{MRUN_STUDY}.2/rendered",
                       headers=headers)
    assert len(parts(series)) == 2
    assert httpx.get(base + CT_URL + "/rendered", params={"window": "1"},
                     headers=headers).status_code == 400
    assert httpx.get(base + CT_URL + "/rendered", headers={
        **headers, "Accept": "image/gif"}).status_code == 406
    assert httpx.get(base + "/dicomweb/studies/1.2.3/thumbnail",
                     headers=headers).status_code == 404


def test_dicomweb_is_cross_origin_isolated_and_cors_only_for_configured_origins(
        service: RunningService) -> None:
    headers = service.bearer(READER)
    url = service.http_base + "/dicomweb/studies"
    answer = httpx.get(url, headers={**headers, "Origin": "https://pacs.chru.invalid"})
    assert answer.headers["access-control-allow-origin"] == "https://pacs.chru.invalid"
    assert answer.headers["cross-origin-opener-policy"] == "same-origin"
    assert answer.headers["cross-origin-embedder-policy"] == "require-corp"
    assert answer.headers["cross-origin-resource-policy"] == "same-origin"
    stranger = httpx.get(url, headers={**headers, "Origin": "https://evil.invalid"})
    assert "access-control-allow-origin" not in stranger.headers
    preflight = httpx.options(url, headers={"Origin": "https://pacs.chru.invalid",
                                            "Access-Control-Request-Method": "GET",
                                            "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert "access-control-allow-credentials" not in preflight.headers
    refused = httpx.options(url, headers={"Origin": "https://evil.invalid",
                                          "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 400


def test_a_wildcard_cors_origin_is_refused_by_the_settings(tmp_path: Path) -> None:
    from adapters.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="never a wildcard"):
        load_settings({"cors_origins": ["*"], "data_dir": tmp_path})


def test_the_viewer_origin_serves_ohif_its_client_routes_and_dicomweb_with_the_session(
        service: RunningService) -> None:
    viewer = f"http://127.0.0.1:{service.ports['viewer']}"
    for route in ("/", "/viewer", "/viewer/dicomweb", "/local"):
        page = httpx.get(viewer + route, params={"StudyInstanceUIDs": "1.2.3"})
        assert page.status_code == 200 and "<title>OHIF</title>" in page.text, route
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert httpx.get(viewer + "/assets/app.js").text == "console.log('ohif')"
    assert httpx.get(viewer + "/assets/missing.js").status_code == 404
    config = httpx.get(viewer + "/app-config.js")
    assert '"qidoRoot": "/dicomweb"' in config.text and "cloudfront" not in config.text
    assert httpx.get(viewer + "/dicomweb/studies").status_code == 401
    person = service.person("dr.viewer", "clinician", establishment="CHRU")
    cookies = {name: value for name, value in person.cookies.items()}
    same_origin = httpx.get(viewer + "/dicomweb/studies", cookies=cookies)
    assert same_origin.status_code == 200 and same_origin.json() == []
    assert same_origin.headers["cross-origin-resource-policy"] == "same-origin"


def test_the_console_opens_a_study_in_the_viewer_in_the_askers_domain_and_traces_it(
        two_sites: RunningService) -> None:
    person = two_sites.person("dr.mrun", "clinician", establishment="MRUN")
    opened = person.get(f"/console/viewer/{CHRU_STUDY}", follow_redirects=False)
    assert opened.status_code == 303, opened.text
    assert opened.headers["location"].endswith(f"/viewer?StudyInstanceUIDs={CHRU_STUDY}")
    trail = two_sites.container.audit.search(actor="user:dr.mrun", limit=100)
    assert any(e.channel == "console" and e.action.value == "read" and e.persons
               and e.authority == "MRUN" for e in trail)
    unknown = person.get("/console/viewer/1.2.3", follow_redirects=False)
    assert unknown.status_code == 404
    auditor = two_sites.person("ms.audit", "auditor")
    refused = auditor.get(f"/console/viewer/{CHRU_STUDY}", follow_redirects=False)
    assert refused.status_code == 403 and "ImagingStudy" in refused.text
    anonymous = httpx.get(two_sites.http_base + f"/console/viewer/{CHRU_STUDY}")
    assert anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]


def test_without_the_viewer_the_console_says_how_to_install_it(
        database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mpi.serve")
    bare = start_service(database_url, tmp_path / "bare")
    assert any("mpi viewer install" in r.getMessage() for r in caplog.records
               if r.name == "mpi.serve")
    try:
        register(bare, "CHRU", "100234")
        store(bare, "CHRU", [write(tmp_path, UNCOMPRESSED_CT, relabel(
            UNCOMPRESSED_CT, patient_id="100234", study=CHRU_STUDY, series=f"{CHRU_STUDY}.1",
            sop=f"{CHRU_STUDY}.1.1"), "a")])
        person = bare.person("dr.chru", "clinician", establishment="CHRU")
        page = person.get(f"/console/viewer/{CHRU_STUDY}", follow_redirects=False)
        assert page.status_code == 503 and "mpi viewer install" in page.text
        assert "viewer" not in bare.ports
    finally:
        bare.stop()


def _tarball(folder: Path, members: dict[str, bytes]) -> Path:
    path = folder / "app.tgz"
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_install_unpacks_the_dist_without_the_optional_onnxruntime(tmp_path: Path) -> None:
    tarball = _tarball(tmp_path, {"package/package.json": b"{}",
                                  "package/dist/index.html": b"<html>",
                                  "package/dist/app.bundle.js": b"js",
                                  "package/dist/ort/ort-wasm.wasm": b"x" * 100})
    size = _unpack(tarball, tmp_path / "dist", with_onnxruntime=False)
    assert size == len(b"<html>") + 2
    assert (tmp_path / "dist" / "app.bundle.js").read_bytes() == b"js"
    assert not (tmp_path / "dist" / "ort").exists()
    assert installed(tmp_path) is None  # no marker yet: not a finished installation


def test_install_refuses_a_package_that_is_not_ohifs_prebuilt_app(tmp_path: Path) -> None:
    no_dist = _tarball(tmp_path, {"package/package.json": b"{}"})
    with pytest.raises(ViewerInstallError, match="no dist/index.html"):
        _unpack(no_dist, tmp_path / "a", with_onnxruntime=False)
    unsafe = _tarball(tmp_path, {"package/dist/../../evil.js": b"x"})
    with pytest.raises(ViewerInstallError, match="unsafe path"):
        _unpack(unsafe, tmp_path / "b", with_onnxruntime=False)
