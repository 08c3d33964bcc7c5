"""`mpi archive import` and `mpi archive export` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from adapters.cli import main
from tests.dicom_objects import JPEG2000_LOSSLESS, UNCOMPRESSED_CT, read, relabel


def _options(database_url: str, data_dir: Path) -> list[str]:
    return ["--database-url", database_url, "--data-dir", str(data_dir)]


def test_import_is_recursive_resumable_and_reports_refusals_then_export_coerces(
        database_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "old-archive"
    (archive / "2019" / "CT").mkdir(parents=True)
    (archive / "2020").mkdir()
    (archive / "2019" / "CT" / "a.dcm").write_bytes(relabel(
        UNCOMPRESSED_CT, patient_id="900", study="1.5.1", series="1.5.1.1", sop="1.5.1.1.1"))
    (archive / "2020" / "b.dcm").write_bytes(relabel(
        JPEG2000_LOSSLESS, patient_id="900", study="1.5.2", series="1.5.2.1", sop="1.5.2.1.1"))
    (archive / "2020" / "notes.txt").write_text("not an image")
    data = tmp_path / "data"
    runner = CliRunner()

    first = runner.invoke(main, ["archive", "import", str(archive), "--authority", "ICL",
                                 *_options(database_url, data)])
    assert first.exit_code == 1  # one file refused
    assert "2 stored, 0 replaced, 0 skipped, 1 refused" in first.output
    assert "notes.txt" in first.output
    again = runner.invoke(main, ["archive", "import", str(archive), "--authority", "ICL",
                                 *_options(database_url, data)])
    assert "0 stored, 0 replaced, 2 skipped, 1 refused" in again.output

    out = tmp_path / "export"
    exported = runner.invoke(main, ["archive", "export", "--person", "1", "--domain", "ICL",
                                    str(out), *_options(database_url, data)])
    assert exported.exit_code == 0, exported.output
    files = sorted(out.rglob("*.dcm"))
    assert [f.name for f in files] == ["1.5.1.1.1.dcm", "1.5.2.1.1.dcm"]
    for path in files:
        ds = read(path)
        assert (ds.PatientID, ds.IssuerOfPatientID) == ("900", "ICL")
        assert [o.PatientID for o in ds.OtherPatientIDsSequence] == ["0000000001"]
    trail = runner.invoke(main, ["audit", "--person", "1", *_options(database_url, data)])
    assert "export" in trail.output
    missing = runner.invoke(main, ["archive", "export", "--person", "999", str(tmp_path / "x"),
                                   *_options(database_url, data)])
    assert missing.exit_code != 0 and "no stored object" in missing.output
