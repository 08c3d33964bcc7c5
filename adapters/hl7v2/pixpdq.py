"""PIX Query (ITI-9, QBP^Q23 → RSP^K23) and Patient Demographics Query (ITI-21, QBP^Q22 →
RSP^K22), with the error answers IHE prescribes."""

from __future__ import annotations

from datetime import datetime

from adapters.hl7v2.er7 import NULL, Message, Segment, escape
from adapters.hl7v2.pid import parse_hl7_date
from adapters.hl7v2.replies import (
    DATA_TYPE_ERROR,
    TABLE_VALUE_NOT_FOUND,
    UNKNOWN_KEY_IDENTIFIER,
    Problem,
    ReplyHeader,
    cx,
    err_segment,
    msh,
    segment,
)
from mpi.authorities import AuthorityRegistry
from mpi.errors import InvalidValueError, UnknownAuthorityError, UnknownIdentifierError
from mpi.model import Authority, Identifier
from mpi.ports import PersonQuery, UnitOfWork
from mpi.queries import PersonView, cross_reference, search_persons

__all__ = ["answer_pix_query", "answer_pdq_query", "MAX_PDQ_PAGE"]

QPD_QUERY_TAG = 2
QPD_PARAMETERS = 3
QPD_PIX_DOMAINS = 4
QPD_PDQ_DOMAINS = 8
RCP_QUANTITY = 2
DSC_POINTER = 1

MAX_PDQ_PAGE = 100  # when RCP-2 asks for nothing smaller

_PDQ_FIELDS = {
    "PID.3": "identifier", "PID.3.1": "identifier",
    "PID.5": "family", "PID.5.1": "family", "PID.5.1.1": "family",
    "PID.5.2": "given",
    "PID.7": "birth_date", "PID.7.1": "birth_date",
    "PID.8": "sex",
    "PID.11.3": "city",
    "PID.11.5": "postcode",
}
_PDQ_DOMAIN_FIELDS = {"PID.3.4", "PID.3.4.1", "PID.3.4.2"}


class _QueryProblem(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _domains(qpd: Segment, field: int, registry: AuthorityRegistry) -> list[Authority] | None:
    """The domains a query asks identifiers in (CX-4 of each repetition); None = all."""
    reps = qpd.repetitions(field)
    if not any(r.strip() for r in reps):
        return None
    found = []
    for number in range(1, len(reps) + 1):
        namespace = qpd.value(field, 4, number, 1)
        oid = qpd.value(field, 4, number, 2)
        try:
            found.append(registry.find(namespace=namespace, oid=oid))
        except UnknownAuthorityError as exc:
            raise _QueryProblem(
                Problem("AE", UNKNOWN_KEY_IDENTIFIER, exc.message, f"QPD^1^{field}^{number}")
            ) from None
    return found


def _response(
    header: ReplyHeader, kind: str, now: datetime, qpd: Segment, status: str,
    problem: Problem | None, body: list[str], qak_counts: tuple[int, int, int] | None = None,
) -> str:
    s = header.seps
    qak = ["QAK", escape(qpd.value(QPD_QUERY_TAG), s), status]
    if qak_counts is not None:
        qak += [qpd.raw(1), *(str(n) for n in qak_counts)]
    lines = _head(header, kind, now, problem)
    lines.append(segment(s, *qak))
    lines.append(qpd.text)
    lines.extend(body)
    return "\r".join(lines) + "\r"


def answer_pix_query(
    uow: UnitOfWork, registry: AuthorityRegistry, message: Message, header: ReplyHeader,
    now: datetime,
) -> tuple[str, Problem | None, set[int]]:
    """RSP^K23 for a QBP^Q23, the problem when it is an AE, and the person disclosed."""
    qpd = message.first("QPD")
    if qpd is None:
        problem = Problem("AR", 100, "QBP^Q23 needs a QPD segment", "QPD")
        return _bare_error(header, now, "K23", problem), problem, set()
    try:
        value = qpd.value(QPD_PARAMETERS, 1)
        try:
            authority = registry.find(
                namespace=qpd.value(QPD_PARAMETERS, 4, 1, 1), oid=qpd.value(QPD_PARAMETERS, 4, 1, 2)
            )
        except UnknownAuthorityError as exc:
            raise _QueryProblem(
                Problem("AE", UNKNOWN_KEY_IDENTIFIER, exc.message, "QPD^1^3^1^4")
            ) from None
        domains = _domains(qpd, QPD_PIX_DOMAINS, registry)
        if not value:
            raise _QueryProblem(
                Problem("AE", 101, "QPD-3 holds no identifier", "QPD^1^3^1^1")
            )
        queried = Identifier(authority.code, value)
        wanted = None if domains is None else {a.code for a in domains}
        try:
            found = cross_reference(uow, registry, queried, wanted)
        except UnknownIdentifierError:
            raise _QueryProblem(
                Problem("AE", UNKNOWN_KEY_IDENTIFIER, f"unknown identifier {queried}",
                        "QPD^1^3^1^1")
            ) from None
    except _QueryProblem as raised:
        return _response(header, "K23", now, qpd, "AE", raised.problem, []), raised.problem, set()
    identifiers = found.identifiers
    if not identifiers:
        return _response(header, "K23", now, qpd, "NF", None, []), None, set()
    s = header.seps
    pid = segment(
        s, "PID", "", "", s.repetition.join(cx(i, registry, header.seps) for i in identifiers), "",
        s.repetition + s.component * 6 + "S",
    )
    persons = {found.person.id} if found.person.id is not None else set()
    return _response(header, "K23", now, qpd, "OK", None, [pid]), None, persons


def _head(header: ReplyHeader, kind: str, now: datetime, problem: Problem | None) -> list[str]:
    """MSH, MSA and, for an error, ERR: what every query response starts with."""
    s = header.seps
    structure = "RSP_K21" if kind == "K22" else "RSP_K23"
    lines = [
        msh(header, s.component.join(["RSP", kind, structure]), now),
        segment(s, "MSA", problem.ack_code if problem else "AA", escape(header.control_id, s)),
    ]
    if problem is not None:
        lines.append(err_segment(header, problem))
    return lines


def _bare_error(header: ReplyHeader, now: datetime, kind: str, problem: Problem) -> str:
    return "\r".join(_head(header, kind, now, problem)) + "\r"


def _pdq_query(qpd: Segment, registry: AuthorityRegistry) -> PersonQuery:
    values: dict[str, object] = {}
    id_value = ""
    id_domain: dict[str, str] = {}
    reps = qpd.repetitions(QPD_PARAMETERS)
    for number in range(1, len(reps) + 1):
        name = qpd.value(QPD_PARAMETERS, 1, number).lstrip("@").upper()
        value = qpd.value(QPD_PARAMETERS, 2, number)
        location = f"QPD^1^3^{number}"
        if not name and not value:
            continue
        if not value or value == NULL:
            continue
        if name in _PDQ_DOMAIN_FIELDS:
            id_domain["oid" if name.endswith(".2") else "namespace"] = value
            continue
        criterion = _PDQ_FIELDS.get(name)
        if criterion is None:
            raise _QueryProblem(
                Problem("AE", TABLE_VALUE_NOT_FOUND, f"query field {name or '?'} is not supported",
                        location)
            )
        if criterion == "identifier":
            id_value = value
        elif criterion == "birth_date":
            try:
                values["birth_date"] = parse_hl7_date(value, location)
            except InvalidValueError as exc:
                raise _QueryProblem(Problem("AE", DATA_TYPE_ERROR, exc.message, location)) from None
        elif criterion == "sex":
            values["sex"] = value.upper()
        else:
            values[criterion] = value
    if id_value:
        try:
            authority = registry.find(**id_domain) if id_domain else None
        except UnknownAuthorityError as exc:
            raise _QueryProblem(
                Problem("AE", UNKNOWN_KEY_IDENTIFIER, exc.message, "QPD^1^3")
            ) from None
        if authority is None:
            raise _QueryProblem(Problem(
                "AE", 101, "@PID.3.1 needs its domain (@PID.3.4.1 or @PID.3.4.2)", "QPD^1^3"
            ))
        values["identifier"] = Identifier(authority.code, id_value)
    return PersonQuery(**values)  # type: ignore[arg-type]


def _quantity(message: Message) -> int:
    rcp = message.first("RCP")
    raw = rcp.value(RCP_QUANTITY, 1) if rcp else ""
    if not raw:
        return MAX_PDQ_PAGE
    try:
        quantity = int(raw)
    except ValueError:
        raise _QueryProblem(
            Problem("AE", DATA_TYPE_ERROR, f"RCP-2 quantity {raw!r} is not a number", "RCP^1^2^1^1")
        ) from None
    if quantity < 1:
        raise _QueryProblem(
            Problem("AE", DATA_TYPE_ERROR, "RCP-2 quantity must be positive", "RCP^1^2^1^1")
        )
    return min(quantity, MAX_PDQ_PAGE)


def _offset(message: Message, tag: str) -> int:
    dsc = message.first("DSC")
    pointer = dsc.value(DSC_POINTER) if dsc else ""
    if not pointer:
        return 0
    prefix, _, number = pointer.rpartition("-")
    if prefix != tag or not (number.isascii() and number.isdigit()):
        raise _QueryProblem(
            Problem("AE", DATA_TYPE_ERROR, f"unknown continuation pointer {pointer!r}",
                    "DSC^1^1")
        )
    return int(number)


def _pdq_pid(view: PersonView, identifiers: list[Identifier], registry: AuthorityRegistry,
             header: ReplyHeader, number: int) -> str:
    s = header.seps
    d = view.demographics
    c = s.component
    names = []
    if d.birth_family_name or d.given_names:
        given = d.given_names[0] if d.given_names else ""
        names.append(c.join([escape(d.birth_family_name or "", s), escape(given, s),
                             escape(" ".join(d.given_names), s), "", "", "", "L"]))
    if d.used_family_name:
        names.append(c.join([escape(d.used_family_name, s), escape(d.used_given_name or "", s),
                             "", "", "", "", "D"]))
    address = ""
    if any((d.street, d.city, d.postcode, d.country)):
        address = c.join([escape(d.street or "", s), "", escape(d.city or "", s), "",
                          escape(d.postcode or "", s), escape(d.country or "", s), "H"])
    fields = [""] * 33
    fields[0] = "PID"
    fields[1] = str(number)
    fields[3] = s.repetition.join(cx(i, registry, header.seps) for i in identifiers)
    fields[5] = s.repetition.join(names)
    fields[7] = d.birth_date.strftime("%Y%m%d") if d.birth_date else ""
    fields[8] = d.sex or ""
    fields[11] = address
    fields[13] = escape(d.phone or "", s)
    fields[23] = escape(d.birthplace or "", s)
    fields[29] = d.death_date.strftime("%Y%m%d") if d.death_date else ""
    fields[32] = s.repetition.join(view.reliability)
    return segment(s, *fields)


def answer_pdq_query(
    uow: UnitOfWork, registry: AuthorityRegistry, message: Message, header: ReplyHeader,
    now: datetime,
) -> tuple[str, Problem | None, set[int]]:
    """RSP^K22 for a QBP^Q22 (with RCP-2 paging and DSC continuation), the problem when it
    is an AE, and the persons disclosed."""
    qpd = message.first("QPD")
    if qpd is None:
        problem = Problem("AR", 100, "QBP^Q22 needs a QPD segment", "QPD")
        return _bare_error(header, now, "K22", problem), problem, set()
    tag = qpd.value(QPD_QUERY_TAG)
    try:
        query = _pdq_query(qpd, registry)
        domains = _domains(qpd, QPD_PDQ_DOMAINS, registry)
        quantity = _quantity(message)
        offset = _offset(message, tag)
        if query.is_empty():
            raise _QueryProblem(Problem("AE", 101, "QPD-3 holds no search criterion", "QPD^1^3"))
    except _QueryProblem as raised:
        return _response(header, "K22", now, qpd, "AE", raised.problem, []), raised.problem, set()
    wanted = None if domains is None else {a.code for a in domains}
    views, total = _search_with_domains(uow, registry, query, wanted, offset, quantity)
    if total == 0:
        return _response(header, "K22", now, qpd, "NF", None, [], (0, 0, 0)), None, set()
    body = []
    s = header.seps
    for number, (view, identifiers) in enumerate(views, start=1):
        body.append(_pdq_pid(view, identifiers, registry, header, number))
        body.append(segment(s, "QRI", "100"))
    remaining = max(0, total - offset - len(views))
    if remaining:
        body.append(segment(s, "DSC", f"{escape(tag, s)}-{offset + len(views)}", "I"))
    return _response(header, "K22", now, qpd, "OK", None, body,
                     (total, len(views), remaining)), None, {
                         view.person.id for view, _ in views if view.person.id is not None}


def _search_with_domains(
    uow: UnitOfWork, registry: AuthorityRegistry, query: PersonQuery, wanted: set[str] | None,
    offset: int, quantity: int,
) -> tuple[list[tuple[PersonView, list[Identifier]]], int]:
    """Persons matching the query that have an identifier in the wanted domains (IHE: a
    patient without one is not returned)."""
    if wanted is None:
        views, total = search_persons(uow, registry, query, offset, quantity)
        return [(v, list(v.identifiers)) for v in views], total
    # Filtering by domain happens after the search: page through until the page is full.
    kept: list[tuple[PersonView, list[Identifier]]] = []
    matching_total = 0
    position = 0
    batch = 200
    while True:
        views, total = search_persons(uow, registry, query, position, batch)
        for view in views:
            identifiers = [i for i in view.identifiers if i.authority in wanted]
            if identifiers:
                if offset <= matching_total < offset + quantity:
                    kept.append((view, identifiers))
                matching_total += 1
        position += batch
        if position >= total:
            return kept, matching_total
