"""The PAM-FR fixture feed of the four establishments, replayed over MLLP into `mpi serve`'s
servers, on SQLite and PostgreSQL: every acknowledgement and the final index as expected."""

from __future__ import annotations

import tomllib
from collections import defaultdict

import pytest

from mpi.model import Identifier, JournalStatus
from mpi.queries import person_view, resolve_person, resolve_record
from tests.feeds import FEEDS, Peer, load_feed, segments
from tests.service import start_service

FEED = FEEDS / "pamfr_nancy.hl7"
EXPECTED = tomllib.loads((FEEDS / "pamfr_nancy.expected.toml").read_text(encoding="utf-8"))


@pytest.fixture
def service(database_url, tmp_path):  # type: ignore[no-untyped-def]
    running = start_service(database_url, tmp_path)
    yield running
    running.stop()


def test_feed_has_enough_messages_from_every_establishment() -> None:
    messages = load_feed(FEED)
    assert len(messages) >= 60
    assert len(messages) == len(EXPECTED["ack"])
    facilities = {m.split("|")[3] for m in messages}
    assert {"CHRU", "ICL", "MRUN", "CCEG"} <= facilities


def test_replaying_the_feed_gives_the_expected_acks_and_index(service) -> None:  # type: ignore[no-untyped-def]
    messages = load_feed(FEED)
    with Peer(service.mllp_port) as peer:
        for message, expected in zip(messages, EXPECTED["ack"], strict=True):
            reply = segments(peer.send(message))
            msa = reply["MSA"][0]
            got = (msa[1], msa[2])
            assert got == (expected["code"], expected["control_id"]), message
            if "error" in expected:
                assert reply["ERR"][0][3].split("^")[0] == str(expected["error"]), message
            else:
                assert "ERR" not in reply, message

    container = service.container
    registry = container.registry
    with container.uow_factory(read_only=True) as uow:
        persons: dict[int, set[str]] = defaultdict(set)
        for group in EXPECTED["person"]:
            for text in group["identifiers"]:
                person = resolve_person(uow, registry, Identifier.parse(text))
                assert person is not None, text
                view = person_view(uow, registry, person)
                persons[person.id].update(  # type: ignore[index]
                    str(i) for i in view.identifiers if i.authority != registry.master.code
                )
        got = sorted(sorted(ids) for ids in persons.values())
        want = sorted(sorted(group["identifiers"]) for group in EXPECTED["person"])
        assert got == want
        for retired in EXPECTED["retired"]:
            record = resolve_record(uow, Identifier.parse(retired["identifier"]))
            assert record is not None
            assert str(record.identifier) == retired["resolves_to"]
        failures = uow.journal.list([JournalStatus.ERROR, JournalStatus.REJECTED], 100)
    expected_failures = [a for a in EXPECTED["ack"] if a["code"] != "AA"]
    # The retransmission of a failed message is answered from the journal, not journaled again.
    assert len(failures) == len({(a["facility"], a["control_id"]) for a in expected_failures})
