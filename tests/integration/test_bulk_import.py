"""`mpi import`: initial loads of a patient table, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from adapters.bootstrap import bootstrap
from adapters.bulk_import import ImportOptions, UnusableFileError, import_file
from adapters.container import Container
from adapters.evaluation.population import generate_population, write_csv
from mpi.model import Identifier
from mpi.queries import resolve_person, resolve_record
from tests.integration.test_cli import environment, mpi
from tests.service import make_settings


@pytest.fixture
def container(database_url: str, tmp_path: Path) -> Container:
    built = bootstrap(make_settings(database_url, tmp_path / "data"), migrate=True)
    yield built
    built.close()


def run(container: Container, path: Path, **options: object) -> object:
    return import_file(path, registry=container.registry, identity=container.identity,
                       uow_factory=container.uow_factory,
                       options=ImportOptions(**options))  # type: ignore[arg-type]


def person_of(container: Container, authority: str, value: str) -> int | None:
    with container.uow_factory(read_only=True) as uow:
        person = resolve_person(uow, container.registry, Identifier(authority, value))
    return person.id if person is not None else None


def test_a_population_extract_is_loaded_with_the_feed_rules_and_matching(
    container: Container, tmp_path: Path
) -> None:
    rows = generate_population(150, seed=3)
    path = tmp_path / "population.csv"
    write_csv(rows, path)
    report = run(container, path, batch_size=64)
    assert (report.rows, report.imported, report.rejected) == (len(rows), len(rows), 0)
    # Records of one person with the same qualified INS at two establishments are one person.
    by_ins: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        if row.qualified:
            by_ins.setdefault(row.ins, []).append((row.authority, row.local_id))
    shared = [ids for ids in by_ins.values() if len({a for a, _ in ids}) > 1]
    assert shared
    for ids in shared:
        assert len({person_of(container, a, v) for a, v in ids}) == 1
    # And never two different true persons in one master person.
    truth: dict[int, set[str]] = {}
    for row in rows:
        person = person_of(container, row.authority, row.local_id)
        assert person is not None
        truth.setdefault(person, set()).add(row.person_key)
    assert all(len(keys) == 1 for keys in truth.values())
    with container.uow_factory(read_only=True) as uow:
        record = resolve_record(uow, Identifier(rows[0].authority, rows[0].local_id))
        assert record is not None
        assert record.demographics.birth_date == rows[0].birth_date
        assert record.demographics.given_names == rows[0].given_names
        assert uow.records.history(record.id)[0]["version"] == 1


def test_a_french_extract_with_a_mapping_rejects_bad_rows_and_keeps_the_others(
    container: Container, tmp_path: Path
) -> None:
    path = tmp_path / "patients_chru.csv"
    path.write_text(
        "N° IPP;Nom de naissance;Nom d'usage;prenom;date_naissance;sexe;Code INS;Statut\n"
        "7001;DUPONT;;Jean;12/05/1980;M;;PROV\n"
        "7002;MARTIN;BERNARD;Anne, Marie;1975-03-02;F;275035412345678;VALI\n"
        "7003;DURAND;;Paul;31/02/1980;M;;\n"  # no such date
        "7004;PETIT;;Luc;01/01/1990;X;;\n"  # unknown sex
        ";SANSID;;Léa;01/01/1990;F;;\n"  # no identifier
        "7006;ROBERT;;Zoé;02/02/2002;F;123;VALI\n"  # INS with a wrong key
        "7007;\"GARNIER;\";\n",  # wrong number of columns
        encoding="latin-1",
    )
    mapping = {"id": "N° IPP", "birth_family_name": "Nom de naissance",
               "used_family_name": "Nom d'usage", "ins": "Code INS", "reliability": "Statut"}
    report = run(container, path, authority="CHRU", mapping=mapping, encoding="latin-1")
    assert (report.rows, report.imported, report.rejected) == (7, 2, 5)
    with container.uow_factory(read_only=True) as uow:
        anne = resolve_record(uow, Identifier("CHRU", "7002"))
        assert anne is not None
        assert anne.demographics.used_family_name == "BERNARD"
        assert anne.demographics.given_names == ("Anne", "Marie")
        assert anne.qualified_ins == Identifier("INS-NIR", "275035412345678")
        assert resolve_record(uow, Identifier("CHRU", "7003")) is None
    with (tmp_path / "patients_chru.csv.rejects.csv").open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert set(reasons) == {"4", "5", "6", "7", "8"}
    assert "31/02/1980" in reasons["4"] and "sex 'X'" in reasons["5"]
    assert "no local identifier" in reasons["6"] and "INS '123'" in reasons["7"]
    assert "columns" in reasons["8"]
    assert rejects[0]["identifier"] == "7003"


def test_rows_of_another_establishment_are_refused_in_an_import_for_one(
    container: Container, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_text(
        json.dumps({"ipp": "1", "authority": "CHRU", "nom": "ZIMMER", "prenoms": ["Eva"],
                    "birth_date": "19800101", "sex": "F"}) + "\n"
        + json.dumps({"ipp": "2", "authority": "ICL", "nom": "ZIMMER"}) + "\n"
        + "not json\n"
        + json.dumps({"ipp": "3", "authority": "GCS", "nom": "MASTER"}) + "\n",
        encoding="utf-8",
    )
    report = run(container, path, authority="CHRU")
    assert (report.imported, report.rejected) == (1, 3)
    rejects = (tmp_path / "mixed.ndjson.rejects.csv").read_text(encoding="utf-8")
    assert "row of ICL in an import for CHRU" in rejects
    assert "not JSON" in rejects
    assert "GCS is not an establishment's domain" in rejects
    with container.uow_factory(read_only=True) as uow:
        eva = resolve_record(uow, Identifier("CHRU", "1"))
        assert eva is not None and eva.demographics.given_names == ("Eva",)
        assert resolve_record(uow, Identifier("ICL", "2")) is None


def test_an_interrupted_import_resumes_where_it_stopped(
    container: Container, tmp_path: Path
) -> None:
    rows = generate_population(60, seed=8)
    path = tmp_path / "population.csv"
    write_csv(rows, path)
    state = tmp_path / "population.csv.import-state.json"
    seen: list[int] = []

    def stop_after_two_batches(read: int, total: int, report: object) -> None:
        seen.append(read)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_file(path, registry=container.registry, identity=container.identity,
                    uow_factory=container.uow_factory, options=ImportOptions(batch_size=20),
                    progress=stop_after_two_batches)
    assert json.loads(state.read_text())["rows_done"] == 40
    with container.uow_factory(read_only=True) as uow:
        assert resolve_record(uow, Identifier(rows[39].authority, rows[39].local_id))
        assert resolve_record(uow, Identifier(rows[40].authority, rows[40].local_id)) is None
    report = run(container, path, batch_size=20)
    assert report.skipped == 40
    assert report.rows == len(rows) - 40 and report.imported == len(rows) - 40
    saved = json.loads(state.read_text())
    assert saved["finished"] is True and saved["imported"] == len(rows)
    with container.uow_factory(read_only=True) as uow:
        for row in rows:
            assert resolve_record(uow, Identifier(row.authority, row.local_id)) is not None
    # The state belongs to that file: a changed file must be restarted explicitly.
    write_csv(rows[:10], path)
    with pytest.raises(UnusableFileError, match="--restart"):
        run(container, path)
    again = run(container, path, restart=True)
    assert again.skipped == 0 and again.imported == 10


def test_an_extract_without_identifier_column_or_in_the_wrong_encoding_is_refused(
    container: Container, tmp_path: Path
) -> None:
    path = tmp_path / "no_id.csv"
    path.write_text("nom,prenom\nDUPONT,Jean\n", encoding="utf-8")
    with pytest.raises(UnusableFileError, match="--map id=COLUMN"):
        run(container, path, authority="CHRU")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("ipp,nom\n1,LEFÈVRE\n".encode("latin-1"))
    with pytest.raises(UnusableFileError, match="--encoding"):
        run(container, latin, authority="CHRU")
    with pytest.raises(UnusableFileError, match="unknown mapping targets"):
        run(container, path, authority="CHRU", mapping={"surname": "nom"})


def test_mpi_import_command_loads_a_file_and_reports(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = tmp_path / "icl.csv"
    path.write_text("IPP|NOM|PRENOMS|NE_LE|SEXE\nI1|HAAG|Claire|14/06/1975|F\n"
                    "I2|KLEIN|Marc|bad|M\n", encoding="utf-8")
    # A fresh index is created by `mpi db upgrade` (or `mpi serve`), not by an import.
    fresh = mpi("import", str(path), "--authority", "ICL", "--data-dir", str(data_dir),
                env=environment())
    assert fresh.returncode == 3 and "mpi db upgrade" in fresh.stderr
    assert not (data_dir / "mpi.sqlite3").exists()
    assert mpi("db", "upgrade", "--data-dir", str(data_dir), env=environment()).returncode == 0
    done = mpi("import", str(path), "--authority", "ICL", "--map", "id=IPP",
               "--map", "birth_family_name=NOM", "--map", "given_names=PRENOMS",
               "--map", "birth_date=NE_LE", "--map", "sex=SEXE", "--date-format", "%d/%m/%Y",
               "--data-dir", str(data_dir), env=environment())
    assert done.returncode == 0, done.stderr
    assert "2 rows" in done.stdout and "1 imported, 1 rejected" in done.stdout
    assert "icl.csv.rejects.csv" in done.stdout
    refused = mpi("import", str(path), "--map", "oops", "--data-dir", str(data_dir),
                  env=environment())
    assert refused.returncode != 0 and "TARGET=COLUMN" in refused.stderr
    unknown = mpi("import", str(path), "--authority", "NOPE", "--restart",
                  "--data-dir", str(data_dir), env=environment())
    assert unknown.returncode == 1 and "NOPE" in unknown.stderr
