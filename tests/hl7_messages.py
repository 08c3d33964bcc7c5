"""Small builders of HL7 v2.5 messages shaped as the Nancy establishments send them (IHE PAM
France 2.11), and of the PIX/PDQ queries a consumer sends. Segments are joined by CR."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence

from mpi.normalize import nir_key

# code: (CX-4.1 namespace, CX-4.2 OID), as in adapters/defaults/authorities.toml
DOMAINS = {
    "CHRU": ("CHRU", "1.2.250.1.999.54.1"),
    "ICL": ("ICL", "1.2.250.1.999.54.2"),
    "MRUN": ("MRUN", "1.2.250.1.999.54.3"),
    "CCEG": ("CCEG", "1.2.250.1.999.54.4"),
    "GCS": ("GCS-ESANTE-LORRAINE", "1.2.250.1.999.54.0"),
    "INS-NIR": ("ASIP-SANTE-INS-NIR", "1.2.250.1.213.1.4.8"),
}
MASTER_OID = DOMAINS["GCS"][1]
APPLICATIONS = {"CHRU": "DXCARE", "ICL": "HEXAGONE", "MRUN": "MEDIBOARD", "CCEG": "CROSSWAY"}

UTF8 = "UNICODE UTF-8"
LATIN1 = "8859/1"
TIMESTAMP = "20240304080000"

_counter = itertools.count(1)
_PROCESS = f"{os.getpid() % 10000:04d}"


def control_id(prefix: str = "T") -> str:
    """An MSH-10 never used before in this test session."""
    return f"{prefix}{_PROCESS}{next(_counter):06d}"


def valid_ins(body: str) -> str:
    """A NIR: its 13 characters followed by their 2-digit key."""
    return f"{body}{nir_key(body):02d}"


def ins_number(number: int, sex: int = 1) -> str:
    """The ``number``-th valid INS of a test (distinct for every number below 1000)."""
    return valid_ins(f"{sex}800154395{number:03d}")


def hd(code: str) -> str:
    namespace, oid = DOMAINS[code]
    return f"{namespace}&{oid}&ISO"


def cx(value: str, code: str, type_code: str | None = None) -> str:
    """One PID-3 repetition: ``value^^^NAMESPACE&OID&ISO^TYPE``."""
    if type_code is None:
        type_code = "INS" if code.startswith("INS") else "PI"
    return f"{value}^^^{hd(code)}^{type_code}"


def domain(code: str) -> str:
    """A domain as QPD-4 / QPD-8 name it: ``^^^NAMESPACE&OID&ISO``."""
    return f"^^^{hd(code)}"


def msh(
    facility: str,
    message_type: str,
    control: str | None = None,
    *,
    charset: str = UTF8,
    application: str | None = None,
) -> str:
    app = application if application is not None else APPLICATIONS.get(facility, "HIS")
    control = control or control_id()
    return (
        f"MSH|^~\\&|{app}|{facility}|MPI|GCS|{TIMESTAMP}||{message_type}|{control}|P|"
        f"2.5^FRA^2.11|||||FRA|{charset}|FRE"
    )


def pid(
    identifiers: Sequence[str],
    family: str = "DUPONT",
    given: str = "Jean",
    birth_date: str = "19800101",
    sex: str = "M",
    *,
    reliability: str = "PROV",
    used_family: str | None = None,
    city: str = "Nancy",
    postcode: str = "54000",
    set_id: int = 1,
) -> str:
    fields = [""] * 33
    fields[0] = "PID"
    fields[1] = str(set_id)
    fields[3] = "~".join(identifiers)
    names = f"{family}^{given}^{given}^^^^L"
    if used_family:
        names += f"~{used_family}^{given}^^^^^D"
    fields[5] = names
    fields[7] = birth_date
    fields[8] = sex
    fields[11] = f"12 rue Stanislas^^{city}^^{postcode}^FRA^H" if city or postcode else ""
    fields[32] = reliability
    return "|".join(fields).rstrip("|")


def message(*segments: str) -> str:
    return "\r".join(segments) + "\r"


def registration(
    facility: str,
    ipp: str,
    family: str = "DUPONT",
    given: str = "Jean",
    birth_date: str = "19800101",
    sex: str = "M",
    *,
    ins: str | None = None,
    reliability: str | None = None,
    event: str = "A28",
    control: str | None = None,
    charset: str = UTF8,
    identifiers: Iterable[str] | None = None,
    used_family: str | None = None,
    extra_segments: Sequence[str] = (),
) -> str:
    """ADT^A28 (or A31, ...) of the sender's record ``ipp``; with a qualified INS when given.

    ``identifiers`` replaces the whole PID-3 when given."""
    if identifiers is None:
        ids = [cx(ipp, facility)]
        if ins is not None:
            ids.append(cx(ins, "INS-NIR"))
    else:
        ids = list(identifiers)
    if reliability is None:
        reliability = "VALI" if ins is not None else "PROV"
    structure = "ADT_A05" if event in ("A28", "A31") else "ADT_A01"
    return message(
        msh(facility, f"ADT^{event}^{structure}", control, charset=charset),
        f"EVN||{TIMESTAMP}|||ADM042^PERRIN^Sandrine|{TIMESTAMP}",
        pid(ids, family, given, birth_date, sex, reliability=reliability,
            used_family=used_family),
        "PV1|1|N",
        *extra_segments,
    )


def merge(
    facility: str,
    survivor_ipp: str,
    retired_ipp: str,
    family: str = "DUPONT",
    given: str = "Jean",
    birth_date: str = "19800101",
    sex: str = "M",
    *,
    control: str | None = None,
) -> str:
    """ADT^A40: ``retired_ipp`` (MRG-1) is folded into ``survivor_ipp`` (PID-3)."""
    return message(
        msh(facility, "ADT^A40^ADT_A39", control),
        f"EVN||{TIMESTAMP}",
        pid([cx(survivor_ipp, facility)], family, given, birth_date, sex),
        f"MRG|{cx(retired_ipp, facility)}",
    )


def change_identifier(
    facility: str, new_ipp: str, old_ipp: str, family: str = "DUPONT", given: str = "Jean",
    *, control: str | None = None,
) -> str:
    """ADT^A47: the record ``old_ipp`` (MRG-1) is now known as ``new_ipp`` (PID-3)."""
    return message(
        msh(facility, "ADT^A47^ADT_A30", control),
        f"EVN||{TIMESTAMP}",
        pid([cx(new_ipp, facility)], family, given),
        f"MRG|{cx(old_ipp, facility)}",
    )


def observation_result(facility: str = "CHRU", *, control: str | None = None) -> str:
    """ORU^R01: not a message type an MPI handles."""
    return message(
        msh(facility, "ORU^R01^ORU_R01", control),
        pid([cx("100001", "CHRU")]),
        "OBR|1||LAB123|GLU^Glucose",
        "OBX|1|NM|GLU^Glucose||5.2|mmol/L",
    )


def pix_query(
    identifier: str,
    domains: Sequence[str] = (),
    *,
    tag: str = "PIXQ1",
    control: str | None = None,
    facility: str = "CHRU",
) -> str:
    """QBP^Q23 for ``identifier`` (a CX), asking for ``domains`` (QPD-4 repetitions)."""
    return message(
        msh(facility, "QBP^Q23^QBP_Q21", control, application="PACS"),
        f"QPD|IHE PIX Query|{tag}|{identifier}|{'~'.join(domains)}",
        "RCP|I",
    )


def pdq_query(
    parameters: Sequence[tuple[str, str]],
    domains: Sequence[str] = (),
    *,
    tag: str = "PDQ1",
    quantity: int | None = None,
    pointer: str | None = None,
    control: str | None = None,
    facility: str = "CHRU",
    charset: str = UTF8,
) -> str:
    """QBP^Q22 with ``@FIELD^value`` parameters, QPD-8 domains, RCP-2 and DSC."""
    criteria = "~".join(f"@{field}^{value}" for field, value in parameters)
    segments = [
        msh(facility, "QBP^Q22^QBP_Q21", control, charset=charset, application="PACS"),
        f"QPD|IHE PDQ Query|{tag}|{criteria}|||||{'~'.join(domains)}",
        f"RCP|I|{quantity}^RD" if quantity is not None else "RCP|I",
    ]
    if pointer is not None:
        segments.append(f"DSC|{pointer}|I")
    return message(*segments)


def query_cancel(tag: str, *, control: str | None = None, facility: str = "CHRU") -> str:
    """QCN^J01: the consumer is done with a continued query."""
    return message(
        msh(facility, "QCN^J01^QCN_J01", control, application="PACS"),
        f"QID|{tag}|IHE PDQ Query",
    )


def line_of(text: str, name: str) -> str:
    """The first segment ``name`` of a message, as written."""
    for line in text.replace("\n", "\r").split("\r"):
        if line.startswith(name + "|"):
            return line
    raise KeyError(name)


def identifiers_of(pid_fields: list[str]) -> set[tuple[str, str, str]]:
    """PID-3 of a PID split on '|' as (value, namespace, OID) triples."""
    found = set()
    for repetition in pid_fields[3].split("~"):
        if not repetition:
            continue
        components = repetition.split("^")
        authority = components[3].split("&") if len(components) > 3 else [""]
        found.add((components[0], authority[0], authority[1] if len(authority) > 1 else ""))
    return found


def ident(value: str, code: str) -> tuple[str, str, str]:
    """The (value, namespace, OID) triple ``identifiers_of`` gives for an identifier."""
    namespace, oid = DOMAINS[code]
    return (value, namespace, oid)
