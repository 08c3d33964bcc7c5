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


def test_review_show_explains_a_duplicate_and_sets_a_held_update_beside_the_record(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    from adapters.bootstrap import bootstrap
    from adapters.sql.engine import default_sqlite_url
    from tests.integration.test_cli import environment, mpi
    from tests.service import make_settings

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    container = bootstrap(make_settings(default_sqlite_url(data_dir), data_dir), migrate=True)
    try:
        for message in (
                registration("CHRU", "880001", "ZIMMERMANN", "Claire", "19750614", "F"),
                registration("ICL", "I880002", "ZIMMERMANN", "Hélène", "19750614", "F"),
                registration("ICL", "I880002", "ZIMMERMANN", "Paul", "19900108", "M",
                             event="A31")):
            assert "MSA|AA|" in container.hl7.handle(message.encode("utf-8")).text
        with container.uow_factory(read_only=True) as uow:
            tasks, _ = uow.reviews.list(None, 0, 10)
    finally:
        container.close()
    duplicate = next(t for t in tasks if t.kind is ReviewKind.DUPLICATE)
    collision = next(t for t in tasks if t.kind is ReviewKind.COLLISION)
    at = ("--data-dir", str(data_dir))
    shown = mpi("review", "show", str(duplicate.id), *at, env=environment())
    assert shown.returncode == 0, shown.stderr
    assert "found by blocking keys: name_year" in shown.stdout
    assert "model default: auto link at p >= 0.9999, review at p >= 0.5" in shown.stdout
    assert "look-alike twins" in shown.stdout
    held = mpi("review", "show", str(collision.id), *at, env=environment())
    assert held.returncode == 0, held.stderr
    assert "(collision, open)" in held.stdout
    assert "held update (from hl7:ICL" in held.stdout
    given = next(line for line in held.stdout.splitlines() if line.startswith("given_names"))
    assert "Hélène" in given and "Paul" in given
    decided = mpi("review", "decide", str(collision.id), "--decision", "discard-update",
                  "--by", "vigilance", "--reason", "typed on the wrong patient", *at,
                  env=environment())
    assert decided.returncode == 0, decided.stderr
