"""An update that describes another person (an overlay) over MLLP: held for review, the record
unchanged, and the ACK says so (AA with a warning ERR, or AE when configured to refuse)."""

from __future__ import annotations

import pytest

from mpi.model import Identifier, ReviewKind, ReviewStatus
from tests.feeds import Peer, segments
from tests.hl7_messages import registration
from tests.service import start_service


@pytest.mark.parametrize("mode, ack_code", [("warn", "AA"), ("refuse", "AE")])
def test_an_overlay_is_held_for_review_and_the_ack_says_so(
        database_url: str, tmp_path, mode: str, ack_code: str) -> None:  # type: ignore[no-untyped-def]
    service = start_service(database_url, tmp_path, hl7_identity_collision=mode)
    try:
        with Peer(service.mllp_port) as peer:
            first = peer.send(registration("CHRU", "7001", "ZIMMERMANN", "Hélène", "19750614",
                                           "F"))
            assert segments(first)["MSA"][0][1] == "AA"
            reply = segments(peer.send(registration(
                "CHRU", "7001", "ZIMMERMANN", "Paul", "19900108", "M", event="A31")))
        assert reply["MSA"][0][1] == ack_code
        err = reply["ERR"][0]
        assert err[4] == ("W" if mode == "warn" else "E")
        assert "held for identity review" in err[8]
        with service.container.uow_factory(read_only=True) as uow:
            record = uow.records.by_identifier(Identifier("CHRU", "7001"))
            assert record is not None and record.id is not None
            assert record.demographics.given_names == ("Hélène",)
            [task] = uow.reviews.open_for_record(record.id)
        assert task.kind is ReviewKind.COLLISION and task.status is ReviewStatus.OPEN
        assert task.evidence["held"]["demographics"]["given_names"] == ["Paul"]
    finally:
        service.stop()
