"""Operating the service: /metrics (who may read it, what it counts, across the HL7 worker
processes) and the JSON log lines with their request ids."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.dicom_objects import run
from tests.feeds import Peer, segments
from tests.hl7_messages import registration
from tests.integration.test_cli import environment, free_port, get_health, mpi_executable
from tests.service import FIXTURES, RunningService, start_service

METRICS_SCOPE = "system/Metrics.r"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def scrape(service: RunningService) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(service.http_base + "/metrics",
                       headers=service.bearer(METRICS_SCOPE), timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path, workers=2)
    yield running
    running.stop()


def test_metrics_add_up_the_hl7_messages_of_every_worker_process(
        service: RunningService) -> None:
    for site, first in (("CHRU", 810000), ("ICL", 820000)):
        with Peer(service.mllp_port) as peer:
            for n in range(3):
                reply = segments(peer.send(registration(site, str(first + n), "METRIQUE")))
                assert reply["MSA"][0][1] == "AA"
    unsupported = registration("CHRU", "810009", "METRIQUE").replace("ADT^A28^ADT_A05",
                                                                      "ADT^Z99^ADT_A05")
    with Peer(service.mllp_port) as peer:
        assert segments(peer.send(unsupported))["MSA"][0][1] != "AA"

    found = scrape(service)
    # Six connections went to two worker processes, whose counts are summed here.
    assert found[("mpi_hl7_messages_total", (("event", "ADT^A28"), ("outcome", "AA")))] == 6
    refused = sum(value for (name, labels), value in found.items()
                  if name == "mpi_hl7_messages_total" and ("outcome", "AA") not in labels)
    assert refused == 1
    assert found[("mpi_hl7_ack_seconds_count", ())] == 7
    assert ("mpi_review_queue_size", ()) in found
    assert found[("mpi_fixity_errors", ())] == 0
    assert ("mpi_job_backlog", (("job", "outbox"),)) in found
    assert not [name for (name, labels) in found for _, value in labels
                if "METRIQUE" in value or "810000" in value]


def test_metrics_count_dicom_operations_and_http_requests_by_route_template(
        database_url: str, tmp_path: Path) -> None:
    service = start_service(database_url, tmp_path)
    try:
        run("storescu", "-aet", "CHRU", "-aec", "VNA", "127.0.0.1", str(service.dicom_port),
            str(FIXTURES / "tour" / "ct-chru.dcm"))
        reader = service.bearer("system/Patient.rs", "CHRU")
        for _ in range(2):
            answer = httpx.get(service.http_base + "/fhir/Patient/100001", headers=reader)
            assert answer.status_code in (200, 404)
        status = str(answer.status_code)
        found = scrape(service)
    finally:
        service.stop()
    assert found[("mpi_dicom_operations_total",
                  (("operation", "C-STORE"), ("outcome", "0x0000")))] == 1
    assert found[("mpi_dicom_associations_total", (("outcome", "accepted"),))] == 1
    # The route's template, never the patient's identifier of the path.
    assert found[("mpi_http_requests_total", (("method", "GET"),
                                              ("route", "/fhir/Patient/{patient_id}"),
                                              ("status", status)))] == 2
    assert not [labels for (_, labels) in found if ("route", "/fhir/Patient/100001") in labels]


def test_metrics_are_for_the_metrics_scope_or_a_person_with_the_admin_role(
        service: RunningService) -> None:
    url = service.http_base + "/metrics"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=service.bearer("system/Patient.rs")).status_code == 403
    assert httpx.get(url, headers=service.bearer(METRICS_SCOPE)).status_code == 200
    assert service.person("root", "admin").get("/metrics").status_code == 200
    assert service.person("dr.who", "clinician").get("/metrics").status_code == 403


def test_json_log_lines_carry_one_request_id_per_exchange_and_no_secret(
        tmp_path: Path) -> None:
    """`mpi serve --log-format json`: every line is one JSON object; the lines of one HTTP
    request, one HL7 message, one DICOM association share a request id; an HTTP caller's own
    X-Request-ID is kept and sent back; no secret or token appears."""
    mllp_port, http_port, dicom_port = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    env = environment()
    subprocess.run([mpi_executable(), "db", "upgrade", "--data-dir", str(data)], env=env,
                   capture_output=True, timeout=60, check=True)
    client = subprocess.run([mpi_executable(), "client", "add", "logs-test", "--establishment",
                             "CHRU", "--scope", "system/Patient.rs", "--data-dir", str(data)],
                            env=env, capture_output=True, text=True, timeout=60, check=True)
    credentials = json.loads(client.stdout)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [mpi_executable(), "serve", "--host", "127.0.0.1", "--mllp-port", str(mllp_port),
             "--http-port", str(http_port), "--dicom-port", str(dicom_port), "--data-dir",
             str(data), "--log-format", "json"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log_path.read_text()
                try:
                    get_health(http_port)
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            token = httpx.post(f"http://127.0.0.1:{http_port}/oauth/token",
                               data={"grant_type": "client_credentials"},
                               auth=(credentials["client_id"], credentials["client_secret"])
                               ).json()["access_token"]
            answer = httpx.get(f"http://127.0.0.1:{http_port}/fhir/Patient?family=dupont",
                               headers={"Authorization": f"Bearer {token}",
                                        "X-Request-ID": "trace-42"})
            assert answer.headers["x-request-id"] == "trace-42"
            with Peer(mllp_port) as peer:
                assert segments(peer.send(registration("CHRU", "100001")))["MSA"][0][1] == "AA"
            run("storescu", "-aet", "CHRU", "-aec", "VNA", "127.0.0.1", str(dicom_port),
                str(FIXTURES / "tour" / "ct-chru.dcm"))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)
    text = log_path.read_text()
    # The log lines; the console's announcements (the database, the first admin's password)
    # go to the terminal as text, never to the log.
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) > 10
    assert credentials["client_secret"] not in text and token not in text

    def the(message: str) -> list[dict[str, object]]:
        return [line for line in lines if str(line["message"]).startswith(message)]

    fhir = [line for line in the("http request") if line.get("route") == "/fhir/Patient"]
    assert [line["request_id"] for line in fhir] == ["trace-42"]
    hl7 = the("hl7 message")
    assert len(hl7) == 1 and hl7[0]["request_id"]
    association = the("dicom association")
    store = the("dicom C-STORE")
    assert len(store) == 1
    assert {line["request_id"] for line in association} == {store[0]["request_id"]}
    ids = [hl7[0]["request_id"], store[0]["request_id"], "trace-42"]
    assert len(set(ids)) == 3
    assert not [line for line in the("listening") if "request_id" in line]
