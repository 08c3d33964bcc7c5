"""`mpi import`: the initial load of a hospital's patient table (CSV or NDJSON extract).

Every row becomes a :class:`mpi.identity.RegisterRecord`, applied by the same use case as an
ADT^A28 (authorization, INS rules, probabilistic matching, review tasks, history, events).
Rows are applied in batches, one transaction per batch; a row the use case refuses sends its
batch back one row per transaction, so that only the bad rows are rejected. Rejected rows go
to a rejects file with their line and the reason, and the load goes on.

Resumable: after each committed batch, a state file next to the input (or ``state_path``)
records how many rows are done; a new run on the same file skips them. A crash between a
commit and the state write replays at most one batch, which changes nothing: registering the
same data again is an update without differences.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from adapters.errors import AdapterError
from mpi.audit import AuditAction, AuditEvent
from mpi.authorities import AuthorityRegistry
from mpi.errors import MPIError
from mpi.events import persons_concerned
from mpi.identity import Actor, IdentityService, RecordData, RegisterRecord
from mpi.model import AuthorityKind, Identifier
from mpi.normalize import nir_problem, normalize_sex
from mpi.ports import UnitOfWork
from mpi.retry import retry_on_conflict

__all__ = [
    "TARGETS",
    "DEFAULT_ALIASES",
    "UnusableFileError",
    "ImportOptions",
    "ImportReport",
    "RowError",
    "import_file",
    "load_mapping",
]

# What a column can feed: the record's identifier, its establishment, its demographics, the
# INS and its reliability codes.
DEMOGRAPHIC_TARGETS = (
    "birth_family_name", "used_family_name", "given_names", "used_given_name", "birth_date",
    "sex", "birthplace", "street", "city", "postcode", "country", "phone", "death_date",
)
TARGETS = ("id", "authority", *DEMOGRAPHIC_TARGETS, "ins", "reliability")

# Column names understood without a mapping (lower case), besides the targets themselves.
DEFAULT_ALIASES = {
    "local_id": "id", "ipp": "id", "patient_id": "id", "nom_naissance": "birth_family_name",
    "nom": "birth_family_name", "nom_usage": "used_family_name", "prenoms": "given_names",
    "prenom": "given_names", "date_naissance": "birth_date", "sexe": "sex",
    "lieu_naissance": "birthplace", "adresse": "street", "ville": "city",
    "code_postal": "postcode", "telephone": "phone", "pays": "country",
    "date_deces": "death_date", "matricule_ins": "ins", "statut_identite": "reliability",
}
DEFAULT_DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d/%m/%Y")
LIST_SEPARATORS = ("|", ",")  # between given names and between reliability codes
SEX_VALUES = {"M", "F", "U", "O", "A", "N"}  # HL7 table 0001
INS_NIR_OID = "1.2.250.1.213.1.4.8"  # the INS column holds NIRs: their domain's OID


class UnusableFileError(AdapterError):
    """The file cannot be imported at all (unreadable, no identifier column, bad mapping,
    or a state file that belongs to another file)."""


class RowError(ValueError):
    """One row cannot be applied; the import goes on without it."""


@dataclass(frozen=True)
class ImportOptions:
    authority: str | None = None  # the establishment of every row, else a column says it
    format: str | None = None  # "csv" or "ndjson"; None: from the file name
    mapping: Mapping[str, str] = field(default_factory=dict)  # target -> column
    delimiter: str | None = None  # CSV; None: sniffed among , ; tab |
    encoding: str = "utf-8"
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    batch_size: int = 500
    state_path: Path | None = None
    rejects_path: Path | None = None
    restart: bool = False  # ignore an existing state file
    actor: str = "import"


@dataclass
class ImportReport:
    rows: int = 0  # rows read in this run (after the skipped ones)
    skipped: int = 0  # rows already done by an earlier run
    imported: int = 0
    rejected: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


# -- reading ----------------------------------------------------------------------------------

class _CountingReader(io.RawIOBase):
    """A binary file that knows how many bytes were read (for the progress bar)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.consumed += len(data)
        return len(data)


def _format_of(path: Path, declared: str | None) -> str:
    if declared:
        if declared not in ("csv", "ndjson"):
            raise UnusableFileError(f"unknown format {declared!r}: csv or ndjson")
        return declared
    suffix = path.suffix.lower()
    if suffix in (".ndjson", ".jsonl"):
        return "ndjson"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    raise UnusableFileError(f"{path.name}: say --format csv or ndjson")


def _rows(handle: io.TextIOBase, kind: str, delimiter: str | None
          ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, {column: value}) for every row; a row that cannot be read at all is
    yielded as (line, {"__error__": reason})."""
    if kind == "ndjson":
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {"__error__": f"not JSON: {exc.msg}"}
                continue
            if not isinstance(value, dict):
                yield number, {"__error__": "a line must be a JSON object"}
                continue
            yield number, value
        return
    first_line = handle.readline()
    if not first_line:
        return
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(first_line, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.reader(itertools.chain([first_line], handle), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        return
    header = [name.strip().lstrip("\ufeff") for name in header]
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            yield reader.line_num, {"__error__": f"{len(values)} columns, the header has "
                                                 f"{len(header)}"}
            continue
        yield reader.line_num, dict(zip(header, values, strict=True))


def load_mapping(path: Path) -> dict[str, str]:
    """A mapping file (TOML): a ``[columns]`` table of target = "column name"."""
    import tomllib

    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UnusableFileError(f"{path}: {exc}") from None
    columns = document.get("columns")
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise UnusableFileError(f"{path}: expected a [columns] table of target = \"column\"")
    return dict(columns)


def _resolve_mapping(columns: Sequence[str], explicit: Mapping[str, str]) -> dict[str, str]:
    """target -> column, from the explicit mapping, then same-named and aliased columns."""
    unknown = set(explicit) - set(TARGETS)
    if unknown:
        raise UnusableFileError(f"unknown mapping targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
    mapping = dict(explicit)
    for column in columns:
        key = column.strip().lower()
        target = key if key in TARGETS else DEFAULT_ALIASES.get(key)
        if target and target not in mapping:
            mapping[target] = column
    missing = [c for t, c in explicit.items() if c not in columns]
    if missing:
        raise UnusableFileError(f"mapped columns not in the file: {', '.join(missing)}")
    if "id" not in mapping:
        raise UnusableFileError("no column gives the local identifier: map one with --map id=COLUMN")
    return mapping


# -- one row ----------------------------------------------------------------------------------

def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(t for t in (_text(v) for v in value) if t)
    text = str(value)
    for separator in LIST_SEPARATORS:
        if separator in text:
            return tuple(p.strip() for p in text.split(separator) if p.strip())
    return (text.strip(),) if text.strip() else ()


def _date(value: Any, formats: Sequence[str], name: str) -> date | None:
    text = _text(value)
    if text is None:
        return None
    for pattern in formats:
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise RowError(f"{name} {text!r} matches none of the date formats {', '.join(formats)}")


@dataclass(frozen=True)
class _Row:
    line: int
    data: RecordData | None
    error: str | None = None
    local_id: str = ""


class _RowReader:
    def __init__(self, registry: AuthorityRegistry, options: ImportOptions,
                 mapping: Mapping[str, str]) -> None:
        self.registry = registry
        self.options = options
        self.mapping = mapping
        try:
            self.ins_authority: str | None = registry.find(oid=INS_NIR_OID).code
        except MPIError:
            self.ins_authority = None

    def value(self, raw: Mapping[str, Any], target: str) -> Any:
        column = self.mapping.get(target)
        return raw.get(column) if column is not None else None

    def record(self, line: int, raw: Mapping[str, Any]) -> _Row:
        if "__error__" in raw:
            return _Row(line, None, str(raw["__error__"]))
        try:
            return _Row(line, self._record(raw))
        except (RowError, MPIError) as exc:
            return _Row(line, None, str(exc), _text(self.value(raw, "id")) or "")

    def _authority(self, raw: Mapping[str, Any]) -> str:
        named = _text(self.value(raw, "authority"))
        if named is None:
            if self.options.authority is None:
                raise RowError("no establishment: give --authority or an authority column")
            return self.options.authority
        try:
            authority = self.registry.named(named)
        except MPIError:
            raise RowError(f"unknown establishment {named!r}") from None
        if authority.kind is not AuthorityKind.ESTABLISHMENT:
            raise RowError(f"{authority.code} is not an establishment's domain")
        if self.options.authority is not None and authority.code != self.options.authority:
            raise RowError(f"row of {authority.code} in an import for {self.options.authority}")
        return authority.code

    def _record(self, raw: Mapping[str, Any]) -> RecordData:
        local_id = _text(self.value(raw, "id"))
        if local_id is None:
            raise RowError("no local identifier")
        identifier = Identifier(self._authority(raw), local_id)
        demographics: dict[str, Any] = {}
        for target in DEMOGRAPHIC_TARGETS:
            if target not in self.mapping:
                continue
            value = self.value(raw, target)
            if target == "given_names":
                demographics[target] = _list(value)
            elif target in ("birth_date", "death_date"):
                demographics[target] = _date(value, self.options.date_formats, target)
            elif target == "sex":
                text = _text(value)
                if text is None:
                    demographics[target] = None
                elif text.upper() in SEX_VALUES:
                    demographics[target] = text.upper()
                else:
                    sex = normalize_sex(text)
                    if sex is None:
                        raise RowError(f"sex {text!r} is not understood")
                    demographics[target] = sex
            else:
                demographics[target] = _text(value)
        ins_value = _text(self.value(raw, "ins"))
        reliability = _list(self.value(raw, "reliability")) if "reliability" in self.mapping \
            else None
        ins = None
        if ins_value is not None:
            ins_value = ins_value.replace(" ", "")
            problem = nir_problem(ins_value)
            if problem is not None:
                raise RowError(problem)
            if self.ins_authority is None:
                raise RowError("no INS-NIR domain in the authorities file")
            ins = Identifier(self.ins_authority, ins_value)
        return RecordData(
            identifier=identifier, demographics=demographics, ins=ins,
            reliability=tuple(c.upper() for c in reliability) if reliability is not None
            else None,
            location=f"row of {identifier}",
        )


# -- state ------------------------------------------------------------------------------------

def _fingerprint(path: Path) -> str:
    """Identifies the input: its size and the hash of its first megabyte."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return f"{path.stat().st_size}:{digest.hexdigest()}"


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(temporary, path)


# -- the import -------------------------------------------------------------------------------

def import_file(
    path: Path,
    *,
    registry: AuthorityRegistry,
    identity: IdentityService,
    uow_factory: Callable[[], UnitOfWork],
    options: ImportOptions,
    progress: Callable[[int, int, ImportReport], None] | None = None,
) -> ImportReport:
    """Import ``path``; ``progress(bytes_read, bytes_total, report)`` is called after each
    batch. Raises UnusableFileError when the file as a whole cannot be imported."""
    import time

    if options.authority is not None:
        authority = registry.by_code(options.authority)
        if authority.kind is not AuthorityKind.ESTABLISHMENT:
            raise UnusableFileError(f"{options.authority} is not an establishment's domain")
    kind = _format_of(path, options.format)
    state_path = options.state_path or path.with_name(path.name + ".import-state.json")
    rejects_path = options.rejects_path or path.with_name(path.name + ".rejects.csv")
    fingerprint = _fingerprint(path)
    done = 0
    earlier = {"imported": 0, "rejected": 0}
    if state_path.exists() and not options.restart:
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UnusableFileError(f"{state_path}: unreadable state ({exc}); use --restart") from None
        if state.get("fingerprint") != fingerprint:
            raise UnusableFileError(f"{state_path} belongs to another version of {path.name}: "
                               "use --restart to import this file from the start")
        done = int(state.get("rows_done", 0))
        earlier = {k: int(state.get(k, 0)) for k in ("imported", "rejected")}
    actor = Actor(options.actor, options.authority)
    report = ImportReport(skipped=done)
    total_bytes = path.stat().st_size
    started = time.perf_counter()
    with path.open("rb") as binary:
        counting = _CountingReader(binary)
        text = io.TextIOWrapper(io.BufferedReader(counting, 1 << 16), encoding=options.encoding,
                                errors="strict", newline="")
        try:
            rows = _rows(text, kind, options.delimiter)
            first = next(rows, None)
            if first is None:
                return report
            columns = list(first[1]) if "__error__" not in first[1] else []
            mapping = _resolve_mapping(columns, options.mapping) if kind == "csv" else \
                _resolve_mapping(_ndjson_columns(first[1], options.mapping), options.mapping)
            reader = _RowReader(registry, options, mapping)
            rejects = _Rejects(rejects_path, append=done > 0)
            batch: list[_Row] = []
            index = 0
            for line, raw in itertools.chain([first], rows):
                index += 1
                if index <= done:
                    continue
                batch.append(reader.record(line, raw))
                if len(batch) >= options.batch_size:
                    _apply(batch, identity, uow_factory, actor, report, rejects)
                    done = index
                    _write_state(state_path, {"file": str(path), "fingerprint": fingerprint,
                                              "rows_done": done, **_counts(report, earlier)})
                    batch = []
                    if progress is not None:
                        progress(counting.consumed, total_bytes, report)
            if batch:
                _apply(batch, identity, uow_factory, actor, report, rejects)
                done = index
            _write_state(state_path, {"file": str(path), "fingerprint": fingerprint,
                                      "rows_done": done, "finished": True,
                                      **_counts(report, earlier)})
            rejects.close()
        except UnicodeDecodeError as exc:
            raise UnusableFileError(f"{path.name} is not {options.encoding} text ({exc.reason} at "
                               f"byte {exc.start}): say --encoding latin-1 or the right one") \
                from None
        finally:
            report.seconds = time.perf_counter() - started
    if progress is not None:
        progress(total_bytes, total_bytes, report)
    return report


def _counts(report: ImportReport, earlier: Mapping[str, int]) -> dict[str, int]:
    """Totals over every run on this file."""
    return {"imported": earlier["imported"] + report.imported,
            "rejected": earlier["rejected"] + report.rejected}


def _ndjson_columns(first: Mapping[str, Any], explicit: Mapping[str, str]) -> list[str]:
    """The keys of the first object are the columns (a later object missing one of them
    has no value there), and so are the mapped names."""
    return list(dict.fromkeys([*first, *explicit.values()]))


class _Rejects:
    """The rejects file: line, identifier when known, reason. Opened on the first reject."""

    def __init__(self, path: Path, append: bool) -> None:
        self.path = path
        self._append = append
        self._handle: io.TextIOWrapper | None = None
        self._writer: Any = None
        if not append and path.exists():
            path.unlink()

    def add(self, line: int, identifier: str, reason: str) -> None:
        if self._writer is None:
            fresh = not (self._append and self.path.exists())
            self._handle = self.path.open("a", encoding="utf-8", newline="")
            self._writer = csv.writer(self._handle)
            if fresh:
                self._writer.writerow(["line", "identifier", "reason"])
        self._writer.writerow([line, identifier, reason])

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def _apply(batch: list[_Row], identity: IdentityService, uow_factory: Callable[[], UnitOfWork],
           actor: Actor, report: ImportReport, rejects: _Rejects) -> None:
    """One transaction for the batch; if the use case refuses a row, the batch is redone one
    row per transaction so that only the refused rows are rejected."""
    report.rows += len(batch)
    good = []
    for row in batch:
        if row.data is None:
            rejects.add(row.line, row.local_id, row.error or "unreadable")
            report.rejected += 1
        else:
            good.append(row)
    try:
        retry_on_conflict(lambda: _register_all(good, identity, uow_factory, actor))
        report.imported += len(good)
    except MPIError:
        for row in good:
            assert row.data is not None
            try:
                retry_on_conflict(functools.partial(_register_all, [row], identity, uow_factory,
                                                    actor))
                report.imported += 1
            except MPIError as exc:
                rejects.add(row.line, str(row.data.identifier), exc.message)
                report.rejected += 1
    rejects.flush()


def _register_all(rows: Sequence[_Row], identity: IdentityService,
                  uow_factory: Callable[[], UnitOfWork], actor: Actor) -> None:
    """Register rows in one transaction, with one access-trail entry naming the importer and
    every person the rows created or changed."""
    with uow_factory() as uow:
        for row in rows:
            assert row.data is not None
            identity.register(uow, RegisterRecord(row.data), actor)
        if rows:
            uow.audit.record(AuditEvent(
                occurred_at=identity.clock.now(), channel="import", action=AuditAction.CREATE,
                actor=actor.name, subject=f"lines {rows[0].line}-{rows[-1].line}",
                outcome="success", authority=actor.authority,
                persons=tuple(sorted(persons_concerned(uow.outbox.added()))),
                detail={"records": len(rows)}))
        uow.commit()
