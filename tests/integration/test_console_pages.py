"""The console's pages on the real service (HTTP on loopback, a logged-in browser session),
on SQLite and PostgreSQL: each page shows the right data to the role it is for, refuses the
others, traces every view of patient data, takes changes only with the session's CSRF
token, speaks French by default and English on request, and answers bad input with a 4xx
page. One service per database for the whole module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from mpi.archive import Sender
from mpi.identity import Actor, RecordData, RegisterRecord
from mpi.model import Identifier
from tests.conftest import DATABASE_KINDS, fresh_database
from tests.dicom_objects import UNCOMPRESSED_CT, UNCOMPRESSED_MR, relabel
from tests.feeds import Peer
from tests.hl7_messages import control_id, merge, registration
from tests.service import PASSWORD, RunningService, start_service


def _register(service: RunningService, authority: str, value: str, family: str, given: str,
              birth: date) -> None:
    c = service.container
    with c.uow_factory() as uow:
        c.identity.register(uow, RegisterRecord(RecordData(
            Identifier(authority, value), {"birth_family_name": family, "given_names": (given,),
                                           "birth_date": birth, "sex": "F"})),
            Actor(f"HIS-{authority}", authority))
        uow.commit()


def _store(service: RunningService, name: str, patient: str, study: str, authority: str,
           description: str) -> None:
    data = relabel(name, patient_id=patient, study=study, series=f"{study}.1",
                   sop=f"{study}.1.1", StudyDescription=description)
    service.container.dicom.store(data, Sender(authority, authority))


@pytest.fixture(scope="module", params=DATABASE_KINDS)
def service(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    folder = tmp_path_factory.mktemp("console")
    running = start_service(fresh_database(request, request.param, folder), folder)
    try:
        # A patient known at two sites (the same identity), with a study at each.
        _register(running, "CHRU", "700001", "LAMBERT", "Odile", date(1948, 3, 9))
        _register(running, "ICL", "I700001", "LAMBERT", "Odile", date(1948, 3, 9))
        _store(running, UNCOMPRESSED_CT, "700001", "1.2.826.0.1.3680043.10.1.1", "CHRU",
               "SCANNER THORAX")
        _store(running, UNCOMPRESSED_MR, "I700001", "1.2.826.0.1.3680043.10.1.2", "ICL",
               "IRM CEREBRALE")
        with Peer(running.mllp_port) as peer:
            # Twins: a review task.
            peer.send(registration("CHRU", "880001", "ZIMMERMANN", "Claire", "19750614", "F"))
            peer.send(registration("ICL", "I880002", "ZIMMERMANN", "Hélène", "19750614", "F"))
            # A merge of records nobody knows: an application error kept for replay.
            peer.send(merge("CHRU", "990010", "990011", control=control_id("A40")))
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


def _text(page: httpx.Response) -> str:
    return re.sub(r"\s+", " ", page.text)


def _trail(service: RunningService, actor: str) -> list[Any]:
    return [e for e in service.container.audit.search(actor=actor, limit=500)
            if e.channel == "console"]


def test_search_finds_a_patient_by_name_birth_date_and_any_identifier(
        service: RunningService) -> None:
    clinician = service.person("dr.search", "clinician")
    person_id = _person_id(service, "CHRU", "700001")
    from mpi.model import master_id_of
    master = master_id_of(person_id)
    for q in ("LAMBERT", "lambert odile", "LAMB*", "lambert od*", "09/03/1948", "1948-03-09", "700001", "I700001",
              "ICL|I700001", master):
        page = clinician.get("/console/persons", params={"q": q})
        assert page.status_code == 200, (q, page.text)
        assert f'href="/console/persons/{person_id}"' in page.text, q
    nobody = clinician.get("/console/persons", params={"q": "NOBODYCALLEDTHIS"})
    assert nobody.status_code == 200 and "Aucun patient trouvé." in nobody.text
    searches = [e for e in _trail(service, "user:dr.search") if e.action.value == "search"]
    assert len(searches) == 11 and person_id in searches[-2].persons  # newest first


def test_the_person_page_shows_both_sites_records_and_studies_and_is_traced(
        service: RunningService) -> None:
    clinician = service.person("dr.person", "clinician")
    person_id = _person_id(service, "CHRU", "700001")
    assert _person_id(service, "ICL", "I700001") == person_id  # linked by the matcher
    page = clinician.get(f"/console/persons/{person_id}")
    assert page.status_code == 200
    text = _text(page)
    assert "CHRU" in text and "700001" in text and "I700001" in text
    assert "SCANNER THORAX" in text and "IRM CEREBRALE" in text
    for uid in ("1.2.826.0.1.3680043.10.1.1", "1.2.826.0.1.3680043.10.1.2"):
        assert f'src="/dicomweb/studies/{uid}/thumbnail"' in text
        assert f'href="/console/viewer/{uid}"' in text
    assert "Historique" in text and "rattachement" in text  # the links, with their score
    [read] = [e for e in _trail(service, "user:dr.person") if e.action.value == "read"]
    assert read.persons == (person_id,) and read.subject == f"/console/persons/{person_id}"
    assert read.source == "127.0.0.1" and read.roles == ("clinician",)


def test_bad_input_gets_a_4xx_page_never_a_500(service: RunningService) -> None:
    clinician = service.person("dr.bad", "clinician")
    vigilance = service.person("dr.badvig", "identity-vigilance")
    for client, path, status in (
            (clinician, "/console/persons/abc", 404),
            (clinician, "/console/persons/999999999", 404),
            (clinician, "/console/persons/99999999999999999999999", 404),
            (clinician, "/console/persons?q=31/02/2020", 400),
            (clinician, "/console/persons?q=NOPE|123", 400),
            (vigilance, "/console/review/xyz", 404),
            (vigilance, "/console/review/424242", 404),
            (vigilance, "/console/review?age=old", 400),
            (vigilance, "/console/indicators?auto=2", 400)):
        page = client.get(path)
        assert page.status_code == status, (path, page.text)
        assert page.headers["content-type"].startswith("text/html"), path
    assert "Date invalide" in clinician.get("/console/persons?q=31/02/2020").text


def test_every_page_checks_its_role(service: RunningService) -> None:
    anonymous = httpx.get(service.http_base + "/console/persons?q=X", follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/console/login?next=")
    clinician = service.person("dr.norole", "clinician")
    for path in ("/console/review", "/console/review/1", "/console/audit",
                 "/console/audit/persons/1", "/console/interfaces", "/console/users",
                 "/console/clients", "/console/lifecycle", "/console/indicators"):
        refused = clinician.get(path)
        assert refused.status_code == 403, path
        assert "Non autorisé" in refused.text
    refusals = [e for e in service.container.audit.search(actor="user:dr.norole")
                if e.action.value == "alert"]
    assert len(refusals) == 9


def test_a_review_decision_needs_the_csrf_token_and_shows_in_history_until_undone(
        service: RunningService) -> None:
    vigilance = service.person("dr.vigil", "identity-vigilance")
    queue = vigilance.get("/console/review")
    assert queue.status_code == 200
    [task_id] = {int(n) for n in re.findall(r'href="/console/review/(\d+)"', queue.text)}
    assert "ZIMMERMANN" in queue.text
    assert "ZIMMERMANN" in vigilance.get("/console/review", params={"establishment": "ICL"}).text
    assert "ZIMMERMANN" not in vigilance.get("/console/review",
                                             params={"establishment": "CHRU"}).text
    shown = _text(vigilance.get(f"/console/review/{task_id}"))
    assert "given_names" in shown and "Claire" in shown and "Hélène" in shown
    assert 'name="decision" value="keep-apart"' in shown
    forged = vigilance.post(f"/console/review/{task_id}/decision",
                            data={"decision": "keep-apart", "reason": "forged"},
                            headers={"X-CSRF-Token": ""}, follow_redirects=False)
    assert forged.status_code == 403
    no_reason = vigilance.post(f"/console/review/{task_id}/decision",
                               data={"decision": "keep-apart", "reason": " "})
    assert no_reason.status_code == 400
    decided = vigilance.post(f"/console/review/{task_id}/decision",
                             data={"decision": "keep-apart", "reason": "jumelles vues au guichet"},
                             follow_redirects=False)
    assert decided.status_code == 303
    person_page = vigilance.get(decided.headers["location"])
    text = _text(person_page)
    assert "jumelles vues au guichet" in text and "user:dr.vigil" in text
    assert f'action="/console/review/{task_id}/undo"' in text
    again = vigilance.post(f"/console/review/{task_id}/decision",
                           data={"decision": "link", "reason": "changed my mind"})
    assert again.status_code == 409

    undone = vigilance.post(f"/console/review/{task_id}/undo",
                            data={"reason": "erreur de saisie"}, follow_redirects=False)
    assert undone.status_code == 303
    assert 'name="decision"' in vigilance.get(f"/console/review/{task_id}").text  # open again
    history = _text(vigilance.get(decided.headers["location"]))
    assert "décision annulée" in history and "erreur de saisie" in history
    changes = [e for e in _trail(service, "user:dr.vigil") if e.action.value == "update"]
    assert [e.detail["decision"] for e in changes] == ["undo", "keep-apart"]


def test_indicators_draw_the_scores_and_answer_a_what_if(service: RunningService) -> None:
    vigilance = service.person("dr.numbers", "identity-vigilance")
    page = vigilance.get("/console/indicators")
    assert page.status_code == 200
    text = _text(page)
    assert "<svg" in text and 'class="threshold auto"' in text
    assert "CHRU" in text and "ICL" in text and "Rattachements automatiques" in text
    assert re.search(r"<strong>0</strong> décisions sur \d+ récentes", text)
    moved = _text(vigilance.get("/console/indicators", params={"auto": "0.5"}))
    changed = int(re.search(r"<strong>(\d+)</strong>", moved)[1])  # type: ignore[index]
    assert changed >= 1  # the twins' review score now passes


def test_the_audit_shows_who_accessed_a_patient(service: RunningService) -> None:
    person_id = _person_id(service, "CHRU", "700001")
    service.person("dr.seen", "clinician").get(f"/console/persons/{person_id}")
    auditor = service.person("dr.audit", "auditor")
    listing = _text(auditor.get("/console/audit", params={"person": str(person_id)}))
    assert "user:dr.seen" in listing and "console" in listing and "127.0.0.1" in listing
    filtered = _text(auditor.get("/console/audit", params={"actor": "dr.seen",
                                                           "since": "01/01/2000"}))
    assert "user:dr.seen" in filtered and "user:dr.audit" not in filtered
    assert auditor.get("/console/audit", params={"since": "2020-13-45"}).status_code == 400
    everyone = _text(auditor.get(f"/console/audit/persons/{person_id}"))
    assert "user:dr.seen" in everyone
    assert any(e.detail.get("audit_trail") and person_id in e.persons
               for e in _trail(service, "user:dr.audit"))


def test_interfaces_show_traffic_replay_errors_and_check_conformance(
        service: RunningService) -> None:
    admin = service.person("dr.admin", "admin")
    page = _text(admin.get("/console/interfaces"))
    assert "ADT^A28" in page and "ADT^A40" in page and "CHRU" in page
    [entry_id] = re.findall(r'action="/console/interfaces/journal/(\d+)/replay"', page)
    replayed = admin.post(f"/console/interfaces/journal/{entry_id}/replay",
                          follow_redirects=True)
    assert replayed.status_code == 200 and "Le message échoue encore" in replayed.text
    assert admin.post("/console/interfaces/journal/987654/replay").status_code == 404
    checked = _text(admin.post("/console/interfaces/conformance"))
    assert re.search(r"<td>CHRU</td><td>\d+</td><td>\d+</td>", checked)


def test_accounts_are_managed_by_the_admin(service: RunningService) -> None:
    admin = service.person("dr.root", "admin")
    added = admin.post("/console/users", data={
        "name": "dr.new", "password": "a long enough password", "roles": ["clinician"]},
        follow_redirects=True)
    assert added.status_code == 200 and "dr.new" in added.text
    short = admin.post("/console/users", data={"name": "dr.bad", "password": "x",
                                               "roles": ["clinician"]})
    assert short.status_code == 409 and "password" in short.text  # refused, and why
    admin.post("/console/users/dr.new/disable")
    [account] = [u for u in service.container.auth.users() if u.name == "dr.new"]
    assert account.is_disabled
    made = admin.post("/console/clients", data={"name": "ris-chru", "scopes": "system/Patient.rs",
                                                "establishment": "CHRU"})
    assert made.status_code == 201
    secret = re.search(r'<code id="secret">([^<]+)</code>', made.text)
    assert secret is not None
    assert secret[1] not in admin.get("/console/clients").text  # shown once
    admin.post("/console/clients/ris-chru/revoke")
    [client] = [c for c in service.container.auth.clients() if c.name == "ris-chru"]
    assert client.revoked_at is not None


def _log_in(service: RunningService, name: str) -> httpx.Client:
    """A new browser session of a person (the login form, as service.person() fills it)."""
    browser = httpx.Client(base_url=service.http_base, timeout=30)
    form = browser.get("/console/login")
    logged = browser.post("/console/login", data={
        "username": name, "password": PASSWORD, "login_csrf": form.cookies["mpi_login"]})
    assert logged.status_code == 303, logged.text
    return browser


def _ended(browser: httpx.Client) -> bool:
    """Whether a browser's session ended: the console sends it back to the login page."""
    answer = browser.get("/console/session")
    return answer.status_code == 303 and answer.headers["location"].startswith("/console/login")


def _account(service: RunningService, name: str) -> Any:
    [account] = [u for u in service.container.auth.users() if u.name == name]
    return account


def test_an_admin_changes_a_person_s_roles_and_establishment(service: RunningService) -> None:
    admin = service.person("dr.grants", "admin")
    nurse = service.person("n.moves", "clinician", establishment="CHRU")
    assert nurse.get("/console/session").json()["roles"] == ["clinician"]
    page = _text(admin.get("/console/users"))
    form = re.search(r'<form method="post" action="/console/users/n.moves/roles">(.*?)</form>',
                     page)
    assert form is not None
    fields = form[1]
    assert "<legend>Rôles de n.moves</legend>" in fields  # each field named by its label
    for role in ("clinician", "identity-vigilance", "admin"):
        [box] = re.findall(rf'<input type="checkbox" id="([^"]+)" name="roles" value="{role}"',
                           fields)
        assert f'<label class="inline" for="{box}">{role}</label>' in fields
    assert re.search(r'value="clinician" checked>', fields)
    assert not re.search(r'value="identity-vigilance" checked>', fields)
    [est] = re.findall(r'<input id="([^"]+)" name="establishment" value="CHRU"', fields)
    assert f'<label for="{est}">Établissement</label>' in fields
    assert "Roles of n.moves" in admin.get("/console/users", params={"lang": "en"}).text
    admin.get("/console/users", params={"lang": "fr"})  # the admin's other tests read French

    # The nurse moves to identity vigilance at the ICL: her open session ends at once, and the
    # next one holds what she was given.
    moved = admin.post("/console/users/n.moves/roles", data={
        "roles": ["identity-vigilance"], "establishment": "ICL"}, follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == "/console/users"
    assert _ended(nurse)
    browser = _log_in(service, "n.moves")
    me = browser.get("/console/session").json()
    assert (me["roles"], me["establishment"]) == (["identity-vigilance"], "ICL")
    assert browser.get("/console/review").status_code == 200  # what the new role opens
    # An empty establishment clears it (regional staff); a second role beside the first.
    admin.post("/console/users/n.moves/roles", data={
        "roles": ["identity-vigilance", "auditor"], "establishment": " "})
    assert _ended(browser)
    browser.close()
    account = _account(service, "n.moves")
    assert (account.roles, account.establishment) == ({"identity-vigilance", "auditor"}, None)

    # Refused, and why, with nothing changed.
    for data, status, why in (
            ({"roles": ["wizard"]}, 409, "unknown role(s) wizard; the roles are clinician"),
            ({"roles": ["clinician"], "establishment": "INS-NIR"}, 409,
             "INS-NIR is not an establishment"),
            ({"roles": ["clinician"], "establishment": "NOWHERE"}, 400, "NOWHERE")):
        refused = admin.post("/console/users/n.moves/roles", data=data)
        assert refused.status_code == status, (data, refused.text)
        assert refused.headers["content-type"].startswith("text/html")
        assert why in refused.text, data
    assert admin.post("/console/users/nobody/roles",
                      data={"roles": ["clinician"]}).status_code == 404
    assert admin.post("/console/users/n.moves/promote").status_code == 404
    account = _account(service, "n.moves")
    assert (account.roles, account.establishment) == ({"identity-vigilance", "auditor"}, None)

    changes = [e.detail for e in _trail(service, "user:dr.grants")
               if e.action.value == "update"]
    assert changes == [  # newest first
        {"account": "user roles", "name": "n.moves",
         "roles": ["auditor", "identity-vigilance"], "establishment": None},
        {"account": "user roles", "name": "n.moves", "roles": ["identity-vigilance"],
         "establishment": "ICL"}]


def test_an_admin_enables_a_disabled_account_again(service: RunningService) -> None:
    admin = service.person("dr.doors", "admin")
    service.container.auth.add_user("dr.away", PASSWORD, ("clinician",), "MRUN")
    assert 'action="/console/users/dr.away/enable"' not in admin.get("/console/users").text
    admin.post("/console/users/dr.away/disable")
    assert _account(service, "dr.away").is_disabled
    page = _text(admin.get("/console/users"))
    enable = re.search(r'<form method="post" action="/console/users/dr.away/enable">'
                       r'<input type="hidden" name="csrf" value="[^"]+">'
                       r'<button type="submit" class="secondary">Réactiver</button></form>', page)
    assert enable is not None
    assert 'action="/console/users/dr.away/disable"' not in page
    enabled = admin.post("/console/users/dr.away/enable", follow_redirects=False)
    assert enabled.status_code == 303
    account = _account(service, "dr.away")
    assert not account.is_disabled
    assert (account.roles, account.establishment) == ({"clinician"}, "MRUN")  # as they were
    browser = _log_in(service, "dr.away")
    assert browser.get("/console/session").json()["roles"] == ["clinician"]
    browser.close()
    assert [e.detail for e in _trail(service, "user:dr.doors")
            if e.action.value == "update"] == [
        {"account": "user enable", "name": "dr.away"},
        {"account": "user disable", "name": "dr.away"}]


def test_account_changes_need_an_admin_and_the_session_s_csrf_token(
        service: RunningService) -> None:
    admin = service.person("dr.keys", "admin")
    clinician = service.person("dr.notadmin", "clinician")
    service.container.auth.add_user("dr.target", PASSWORD, ("clinician",), "CHRU")
    admin.post("/console/users/dr.target/disable")
    for act, data in (("roles", {"roles": ["admin"]}), ("enable", {})):
        assert clinician.post(f"/console/users/dr.target/{act}", data=data).status_code == 403
        forged = admin.post(f"/console/users/dr.target/{act}", data=data,
                            headers={"X-CSRF-Token": ""})
        assert forged.status_code == 403, act
    account = _account(service, "dr.target")
    assert account.roles == {"clinician"} and account.is_disabled  # nothing changed
    refusals = [e for e in service.container.audit.search(actor="user:dr.notadmin")
                if e.action.value == "alert"]
    assert len(refusals) == 2


def test_the_last_enabled_admin_can_neither_lose_admin_nor_be_disabled(
        service: RunningService) -> None:
    from datetime import UTC, datetime

    lone = service.person("dr.lone", "admin")
    c = service.container
    # The module's other admins set aside for this test (their sessions kept for the others).
    others = [u.name for u in c.auth.users()
              if "admin" in u.roles and not u.is_disabled and u.name != "dr.lone"]

    def set_aside(disabled_at: datetime | None) -> None:
        with c.uow_factory() as uow:
            for name in others:
                account = uow.users.get(name)
                assert account is not None
                account.disabled_at = disabled_at
                uow.users.save(account)
            uow.commit()

    set_aside(datetime.now(UTC))
    try:
        for act, data, change in (("roles", {"roles": ["clinician"]}, "lose the role admin"),
                                  ("disable", {}, "be disabled")):
            refused = lone.post(f"/console/users/dr.lone/{act}", data=data)
            assert refused.status_code == 409, refused.text
            assert (f"dr.lone is the last enabled account holding admin and cannot {change}"
                    in refused.text)
        account = _account(service, "dr.lone")
        assert account.roles == {"admin"} and not account.is_disabled
        assert lone.get("/console/users").status_code == 200  # still administers
        # Another role beside admin is no loss of admin (and, as any change, ends the session).
        kept = lone.post("/console/users/dr.lone/roles",
                         data={"roles": ["admin", "auditor"]}, follow_redirects=False)
        assert kept.status_code == 303
        assert _account(service, "dr.lone").roles == {"admin", "auditor"}
    finally:
        set_aside(None)


def test_the_lifecycle_page_lists_expirations_and_places_a_hold(
        service: RunningService) -> None:
    archivist = service.person("dr.archive", "archivist")
    page = archivist.get("/console/lifecycle")
    assert page.status_code == 200 and "Fins de conservation par année" in page.text
    person_id = _person_id(service, "CHRU", "700001")
    held = archivist.post("/console/lifecycle/holds", data={
        "person_id": str(person_id), "reason": "contentieux", "reference": "TJ-2026-17"},
        follow_redirects=True)
    assert held.status_code == 200 and "TJ-2026-17" in held.text
    assert archivist.post("/console/lifecycle/holds", data={
        "reason": "x", "reference": "y"}).status_code == 400


def test_the_console_speaks_french_by_default_and_english_on_request(
        service: RunningService) -> None:
    clinician = service.person("dr.lang", "clinician")
    assert '<html lang="fr">' in clinician.get("/console/").text
    english = clinician.get("/console/persons", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english.text and "Search" in english.text
    switched = clinician.get("/console/persons?q=LAMBERT&lang=en")
    assert '<html lang="en">' in switched.text and "patient(s) found" in switched.text
    assert 'href="/console/persons?q=LAMBERT&amp;lang=fr"' in switched.text  # same page
    assert '<html lang="en">' in clinician.get("/console/").text  # the choice is kept
    assert '<html lang="fr">' in clinician.get("/console/?lang=fr").text
    assert 'class="skip" href="#main"' in clinician.get("/console/").text


def test_every_string_of_the_catalog_has_both_languages() -> None:
    from adapters.console.i18n import CATALOG

    assert all(len(v) == 2 and all(v) for v in CATALOG.values())
    folder = Path(__file__).resolve().parents[2] / "adapters" / "console" / "templates"
    used = {k for f in folder.glob("*.html") for k in re.findall(r'\bt\("([a-z_.]+)"[,)]', f.read_text())}
    assert used and used <= set(CATALOG)


def test_a_study_reassigned_shows_in_both_persons_history(service: RunningService) -> None:
    from mpi.archive.lifecycle import Staff

    _register(service, "MRUN", "M700050", "MOREL", "Agathe", date(1990, 5, 5))
    _register(service, "MRUN", "M700051", "ROUX", "Ines", date(1961, 11, 2))
    uid = "1.2.826.0.1.3680043.10.1.50"
    _store(service, UNCOMPRESSED_CT, "M700050", uid, "MRUN", "RADIO GENOU")
    service.container.lifecycle.reassign(
        Staff("dr.archive2", frozenset({"identity-vigilance"})), uid, Identifier("MRUN", "M700051"),
        "examen enregistré sous le mauvais dossier", channel="cli", source=None)
    clinician = service.person("dr.moved", "clinician")
    for value in ("M700050", "M700051"):
        page = _text(clinician.get(f"/console/persons/{_person_id(service, 'MRUN', value)}"))
        assert "réaffectation d'examen" in page.replace("&#39;", "'"), value
        assert "examen enregistré sous le mauvais dossier" in page
        assert f"{uid}: MRUN|M700050 → MRUN|M700051" in page


def test_a_destruction_proposal_has_its_printable_bordereau(service: RunningService) -> None:
    _register(service, "CCEG", "C700090", "FAURE", "Berthe", date(1921, 2, 3))
    uid = "1.2.826.0.1.3680043.10.1.90"
    _store(service, UNCOMPRESSED_CT, "C700090", uid, "CCEG", "RADIO THORAX 1990")
    with service.container.engine.begin() as connection:  # an examination of long ago
        from sqlalchemy import update

        from adapters.sql.tables import archive_studies
        connection.execute(update(archive_studies).where(
            archive_studies.c.study_instance_uid == uid).values(study_date=date(1990, 1, 8)))
    archivist = service.person("dr.archivist", "archivist")
    proposed = archivist.post("/console/lifecycle/proposals", data={"establishment": "CCEG"},
                              follow_redirects=True)
    assert proposed.status_code == 200, proposed.text
    [number] = re.findall(r'href="/console/lifecycle/proposals/(\d+)"', proposed.text)
    bordereau = archivist.get(f"/console/lifecycle/proposals/{number}")
    assert bordereau.status_code == 200 and uid in bordereau.text
    assert "Bordereau d'élimination" in bordereau.text.replace("&#39;", "'")
    css = httpx.get(service.http_base + "/console/static/console.css").text
    assert "@media print" in css  # the page prints without the bar and the forms
    early = archivist.post(f"/console/lifecycle/proposals/{number}/destruction")
    assert early.status_code == 409  # neither approved nor visaed: nothing destroyed
    assert archivist.get(f"/console/lifecycle/proposals/{number}/burn").status_code == 405
    dim = service.person("dr.dim", "dim")
    approved = dim.post(f"/console/lifecycle/proposals/{number}/approvals",
                        data={"role": "dim"}, follow_redirects=True)
    assert approved.status_code == 200 and "dim: dr.dim" in approved.text
