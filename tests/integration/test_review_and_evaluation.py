"""The review queue over HTTP and the command line, and the evaluation on the synthetic
population, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from adapters.evaluation import evaluate
from tests.feeds import Peer
from tests.hl7_messages import registration
from tests.service import start_service


def test_review_tasks_are_listed_shown_and_decided_over_http(database_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = start_service(database_url, tmp_path)
    try:
        with Peer(service.mllp_port) as peer:
            # Twins: same family name, birth date and address, different first given names.
            peer.send(registration("CHRU", "880001", "ZIMMERMANN", "Claire", "19750614", "F"))
            peer.send(registration("ICL", "I880002", "ZIMMERMANN", "Hélène", "19750614", "F"))
        assert httpx.get(service.http_base + "/api/review").status_code == 401  # nobody acts anonymously
        client = service.person("dr.vigilance", "identity-vigilance")
        listing = client.get("/api/review").json()
        assert listing["total"] == 1
        task = listing["tasks"][0]
        assert task["evidence"]["twins"] is True
        shown = client.get(f"/api/review/{task['id']}").json()
        assert shown["record"]["identifier"] == "ICL|I880002"
        assert "CHRU|880001" in shown["candidate"]["identifiers"]
        assert client.get("/api/review/999999").status_code == 404
        bad = client.post(f"/api/review/{task['id']}/decision", json={"decision": "link"})
        assert bad.status_code == 422  # a decision needs its reason
        # a clinician does not decide, and a change without the session's CSRF token is refused
        clinician = service.person("dr.house", "clinician")
        assert clinician.get("/api/review").status_code == 403
        forged = client.post(f"/api/review/{task['id']}/decision",
                             json={"decision": "link", "reason": "forged"},
                             headers={"X-CSRF-Token": "not-the-session-s"})
        assert forged.status_code == 403
        decided = client.post(f"/api/review/{task['id']}/decision",
                              json={"decision": "keep-apart", "reason": "twins, seen at desk"})
        assert decided.status_code == 200
        assert decided.json()["decided_by"] == "user:dr.vigilance"
        again = client.post(f"/api/review/{task['id']}/decision",
                            json={"decision": "link", "reason": "changed my mind"})
        assert again.status_code == 409
        assert client.get("/api/review").json()["total"] == 0

        # Every access to these patients' data was traced: who, what, from where, whom.
        trail = [e for e in service.container.audit.search(actor="user:dr.vigilance")
                 if e.channel == "api" and e.outcome == "success"]
        assert [e.action.value for e in trail] == ["search", "update", "read", "search"]
        read = trail[2]
        assert read.subject == f"/api/review/{task['id']}"
        assert read.detail == {"review_task": task["id"]}
        assert read.source == "127.0.0.1"
        assert read.roles == ("identity-vigilance",)
        assert set(read.persons) == {task["person_id"], shown["record_person"]["id"]}
        refused = service.container.audit.search(actor="user:dr.house")
        assert any(e.action.value == "alert" and e.outcome == "403" for e in refused)
        about_candidate = service.container.audit.search(person_id=task["person_id"])
        assert {(e.channel, e.action.value) for e in about_candidate} >= {
            ("api", "read"), ("api", "update"), ("api", "search")}
        assert service.container.audit.search(person_id=987654321) == []
    finally:
        service.stop()


def test_the_synthetic_population_replays_without_any_false_merge(database_url) -> None:  # type: ignore[no-untyped-def]
    url = database_url if database_url.startswith("postgresql") else None
    report = evaluate(300, seed=11, database_url=url)
    assert report.rejected == 0
    assert report.false_merges == []
    assert report.linked_pairs > 0 and report.correct_pairs == report.linked_pairs
    assert report.recall_with_review >= report.recall


def test_twice_the_errors_still_replay_without_any_false_merge_and_the_misses_have_causes(
        database_url) -> None:  # type: ignore[no-untyped-def]
    url = database_url if database_url.startswith("postgresql") else None
    report = evaluate(300, seed=13, database_url=url, error_factor=2.0)
    assert report.rejected == 0
    assert report.false_merges == []
    assert report.error_factor == 2.0
    missed = report.true_pairs - report.correct_pairs
    by_ins = sum(report.causes[c].missed for c in ("ins:both", "ins:one", "ins:none")
                 if c in report.causes)
    by_sites = sum(report.causes[c].missed for c in ("same establishment", "two establishments")
                   if c in report.causes)
    assert by_ins == by_sites == missed  # each missed pair under one INS and one site cause
    assert report.causes["ins:both"].missed == 0  # one qualified INS links them
    lines = report.lines()
    assert "error factor 2" in lines[0]
    assert any(line.startswith("true pairs by cause") for line in lines)


def test_mpi_evaluate_takes_an_error_factor_and_prints_the_causes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.test_cli import environment, mpi

    done = mpi("evaluate", "--persons", "120", "--seed", "3", "--error-factor", "2",
               env=environment(HOME=str(tmp_path)), timeout=300)
    assert done.returncode == 0, done.stderr
    assert "error factor 2" in done.stdout and "false merges: 0 pairs" in done.stdout
    assert "ins:none" in done.stdout
    refused = mpi("evaluate", "--persons", "10", "--error-factor", "-1",
                  env=environment(HOME=str(tmp_path)), timeout=300)
    assert refused.returncode == 2 and "error-factor" in refused.stderr
