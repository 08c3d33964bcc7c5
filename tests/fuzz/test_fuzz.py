"""The short fuzzing run of the suite (a few hundred derandomized inputs per target), and the
replay of every input that ever broke a check (``corpus/``). The long run is
``bench/fuzz.py``; see ``targets.py`` for what each target sends and checks."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz import targets
from tests.service import RunningService, start_service

SHORT = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
SHORT_SERVICE = settings(SHORT, max_examples=150)
_controls = itertools.count(1)


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    running = start_service(database_url, tmp_path)
    yield running
    running.stop()


def _control() -> str:
    return f"FUZZ{next(_controls):08d}"


# -- the short run ---------------------------------------------------------------------------

@SHORT
@given(targets.hl7_inputs())
def test_the_er7_reader_raises_only_its_parse_error(data: bytes) -> None:
    targets.check_er7(data)


@SHORT
@given(targets.hl7_inputs())
def test_the_mllp_decoder_never_raises_and_does_not_depend_on_how_bytes_arrive(
        data: bytes) -> None:
    targets.check_framing(data)
    targets.check_framing(b"\x0b" + data + b"\x1c\r")


@SHORT_SERVICE
@given(data=targets.hl7_inputs())
def test_the_hl7_application_answers_every_payload_with_an_ack(
        service: RunningService, data: bytes) -> None:
    targets.check_hl7_application(service, data)


@SHORT_SERVICE
@given(data=targets.hl7_inputs())
def test_the_mllp_listener_answers_a_good_message_after_any_bytes(
        service: RunningService, data: bytes) -> None:
    targets.check_mllp(service, data, _control())


def test_the_cstore_scp_answers_mutated_objects_without_a_partial_file(
        service: RunningService, tmp_path: Path) -> None:
    scu = targets.StoreScu(service)

    @SHORT_SERVICE
    @given(data=targets.dicom_inputs())
    def run(data: bytes) -> None:
        targets.check_cstore(service, scu, data, tmp_path)

    try:
        run()
    finally:
        scu.close()


def test_stow_rs_answers_mutated_objects_below_500_without_a_partial_file(
        service: RunningService) -> None:
    headers = targets.Bearer(service, "system/ImagingStudy.c", "CHRU")

    @SHORT_SERVICE
    @given(data=targets.dicom_inputs())
    def run(data: bytes) -> None:
        targets.check_stow(service, headers, data)

    run()


def test_the_fhir_routes_answer_any_parameters_and_bodies_below_500(
        service: RunningService) -> None:
    headers = targets.Bearer(service, "system/Patient.rs system/ImagingStudy.rs "
                                      "system/AuditEvent.rs", "CHRU")

    @settings(SHORT, max_examples=200)
    @given(request=targets.fhir_inputs())
    def run(request: dict[str, object]) -> None:
        targets.check_fhir(service, headers, request)

    run()


# -- the inputs that once broke a check ------------------------------------------------------

def _kept(*names: str) -> list[targets.Kept]:
    return [k for name in names for k in targets.kept(name)]


@pytest.mark.parametrize("kept", _kept("er7", "framing"), ids=lambda k: f"{k.target}/{k.name}")
def test_kept_inputs_of_the_readers(kept: targets.Kept) -> None:
    (targets.check_er7 if kept.target == "er7" else targets.check_framing)(kept.data)


@pytest.mark.parametrize("kept", _kept("hl7-application", "mllp", "dicom-cstore", "stow-rs",
                                       "fhir"), ids=lambda k: f"{k.target}/{k.name}")
def test_kept_inputs_of_the_service(kept: targets.Kept, service: RunningService,
                                    tmp_path: Path) -> None:
    if kept.target == "hl7-application":
        targets.check_hl7_application(service, kept.data)
    elif kept.target == "mllp":
        targets.check_mllp(service, kept.data, _control())
    elif kept.target == "dicom-cstore":
        scu = targets.StoreScu(service)
        try:
            targets.check_cstore(service, scu, kept.data, tmp_path)
        finally:
            scu.close()
    elif kept.target == "stow-rs":
        targets.check_stow(service, targets.Bearer(service, "system/ImagingStudy.c", "CHRU"),
                           kept.data)
    else:
        targets.check_fhir(service, targets.Bearer(service, "system/*.rs", "CHRU"),
                           targets.fhir_request_of(kept.data))
