"""Lossless compression over every suitable pixel file bundled with pydicom, and over test
objects made from them (the bundled compressed and big endian ones decoded to little endian,
a YBR_FULL copy of an RGB image): multi-frame, colour (RGB, YBR), signed pixels, 12 bits
stored in 16, 1 and 32 bits, odd sizes. Each object is either compressed and decodes to the
original pixels bit for bit (checked here with another decoder call than the archive's, and
with dcmtk's dcmdjpls), or left as it is, byte for byte, with the reason recorded. A
compression interrupted at any step leaves every instance readable and finishes when run
again."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from pydicom import dcmread
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, pixel_array

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from adapters.cli import main
from adapters.dicom.compress import (
    COMPRESSIBLE_SYNTAXES,
    LOSSLESS_SYNTAXES,
    CompressionFailedError,
    can_decode,
    compress_object,
)
from adapters.dicom.header import parse_object
from adapters.dicom.preservation import CompressionSettings, Compressor
from adapters.sql.engine import create_engine_for
from mpi.archive import ArchiveService, Sender
from mpi.identity import IdentityService
from tests.conftest import sql_uow_factory
from tests.dicom_objects import run
from tests.fakes import FakeBlobStore, FixedClock, fake_uow_factory

EXPLICIT_LE, BIG_ENDIAN = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"


def _read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(BytesIO(data))


def _raw(data: bytes) -> np.ndarray[Any, Any]:
    """The pixels as stored, no colour conversion (pydicom's functional decoder, not the
    Dataset.pixel_array the archive compares with)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(pixel_array(BytesIO(data), as_rgb=False))


def _saved(dataset: Dataset) -> bytes:
    out = BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _little_endian_copy(dataset: Dataset) -> Dataset | None:
    """A bundled compressed or big endian object as an uncompressed little endian one."""
    syntax = str(dataset.file_meta.TransferSyntaxUID)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if syntax == BIG_ENDIAN:
            if dataset.BitsAllocated < 8:
                return None
            pixels = dataset.pixel_array
            dataset.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            dataset["PixelData"].VR = "OB" if dataset.BitsAllocated == 8 else "OW"
        elif can_decode(syntax):
            try:
                dataset.decompress(as_rgb=False, generate_instance_uid=False)
            except Exception:  # a bundled file its decoder refuses: not a test object
                return None
        else:
            return None
    copy = Dataset()  # no memory of the encoding it was read in
    for element in dataset:
        copy.add(element)
    copy.file_meta = dataset.file_meta
    copy.file_meta.TransferSyntaxUID = EXPLICIT_LE
    return copy


def _labelled(dataset: Dataset, number: int) -> bytes:
    dataset.PatientID = f"P{number}"
    dataset.PatientName = "COVERAGE^TEST"
    for keyword in ("IssuerOfPatientID", "OtherPatientIDsSequence"):
        if keyword in dataset:
            delattr(dataset, keyword)
    dataset.StudyInstanceUID = f"1.2.826.0.1.3680043.10.54.{number}"
    dataset.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.54.{number}.1"
    dataset.SOPInstanceUID = f"1.2.826.0.1.3680043.10.54.{number}.1.1"
    if "SOPClassUID" not in dataset:
        dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    return _saved(dataset)


def _objects() -> dict[str, bytes]:
    """Every bundled file with pixel data that compression starts from (uncompressed
    little endian), then the test objects made from the others; each with its own UIDs."""
    found: dict[str, bytes] = {}
    derived: dict[str, bytes] = {}
    for number, path in enumerate(sorted(get_testdata_files("**/*")), start=1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = dcmread(path)
        except Exception:  # not DICOM (the bundled folder holds other files)
            continue
        meta = getattr(dataset, "file_meta", None)
        syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        if "PixelData" not in dataset or not syntax:
            continue
        name = path.split("test_files/")[-1]
        if syntax in COMPRESSIBLE_SYNTAXES:
            found[name] = _labelled(dataset, number)
        else:
            copy = _little_endian_copy(dataset)
            if copy is not None:
                derived[f"{name} (decoded)"] = _labelled(copy, 10_000 + number)
    rgb = _read(found["examples_rgb_color.dcm"])
    rgb.PixelData = convert_color_space(rgb.pixel_array, "RGB", "YBR_FULL").tobytes()
    rgb.PhotometricInterpretation = "YBR_FULL"
    derived["examples_rgb_color.dcm (as YBR_FULL)"] = _labelled(rgb, 20_000)
    return {**found, **derived}


OBJECTS = _objects()


def _kinds(data: bytes) -> set[str]:
    d = _read(data)
    kinds = set()
    frames = str(d.get("NumberOfFrames", 1) or 1)
    if frames.isdigit() and int(frames) > 1:
        kinds.add("multi-frame")
    photometric = str(d.get("PhotometricInterpretation", ""))
    if photometric == "RGB":
        kinds.add("RGB")
    if photometric.startswith("YBR"):
        kinds.add("YBR")
    if d.get("PixelRepresentation") == 1:
        kinds.add("signed")
    if (d.get("BitsAllocated"), d.get("BitsStored")) == (16, 12):
        kinds.add("12 bits in 16")
    if d.get("Rows", 0) % 2 or d.get("Columns", 0) % 2:
        kinds.add("odd size")
    return kinds


def test_the_objects_cover_what_the_issue_names() -> None:
    assert len(OBJECTS) >= 70
    kinds = set().union(*(_kinds(data) for data in OBJECTS.values()))
    assert kinds >= {"multi-frame", "RGB", "YBR", "signed", "12 bits in 16", "odd size"}


@pytest.mark.parametrize("syntax", sorted(LOSSLESS_SYNTAXES))
def test_each_object_is_compressed_exactly_or_refused_with_a_reason(syntax: str) -> None:
    uid = str(LOSSLESS_SYNTAXES[syntax])
    compressed_kinds: set[str] = set()
    refused: dict[str, str] = {}
    for name, data in OBJECTS.items():
        try:
            copy = compress_object(data, uid)
        except CompressionFailedError as exc:
            assert str(exc), name
            refused[name] = str(exc)
            continue
        again = _read(copy.data)
        assert str(again.file_meta.TransferSyntaxUID) == uid, name
        assert again.SOPInstanceUID == _read(data).SOPInstanceUID, name
        assert copy.sha256 == hashlib.sha256(copy.data).hexdigest()
        before, after = _raw(data), _raw(copy.data)
        assert before.dtype == after.dtype and before.shape == after.shape, name
        assert np.array_equal(before, after), f"{name}: a pixel changed"
        compressed_kinds |= _kinds(data)
    wanted = {"multi-frame", "RGB", "YBR", "signed", "12 bits in 16", "odd size"}
    if syntax == "jpeg2000":  # OpenJPEG refuses the smallest images (3x3): recorded
        wanted -= {"odd size"}
    assert compressed_kinds >= wanted, (syntax, refused)
    # OpenJPEG also refuses images under 32 pixels a side (its default resolutions).
    assert len(OBJECTS) - len(refused) >= (25 if syntax == "jpeg2000" else 55), refused


def _stored_pixels_equal(original: bytes, stored: bytes) -> bool:
    a, b = _raw(original), _raw(stored)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def test_mpi_archive_compress_over_every_object(database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "objects"
    folder.mkdir()
    by_sop: dict[str, tuple[str, bytes]] = {}
    for number, (name, data) in enumerate(OBJECTS.items()):
        (folder / f"{number:03d}.dcm").write_bytes(data)
        by_sop[str(_read(data).SOPInstanceUID)] = (name, data)
    options = ["--database-url", database_url, "--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    imported = runner.invoke(main, ["archive", "import", str(folder), "--authority", "CHRU",
                                    *options])
    engine = create_engine_for(database_url)
    factory = sql_uow_factory(engine)
    try:
        with factory(read_only=True) as uow:
            stored = {i.sop_instance_uid: i for i in uow.archive.compression_candidates(
                __import__("mpi.archive", fromlist=["CompressionCriteria"]).CompressionCriteria(
                    datetime.now(UTC), COMPRESSIBLE_SYNTAXES, (), ()), 10_000)}
        refused_at_ingest = imported.output.count("refused ")
        assert len(stored) + refused_at_ingest >= len(OBJECTS) - 1, imported.output
        assert len(stored) >= 70, imported.output

        done = runner.invoke(main, ["archive", "compress", "--min-age-days", "0",
                                    "--limit", "1000", *options])
        assert done.exit_code == 0, done.output
        assert "compressing" in done.stderr  # the progress bar
        with factory(read_only=True) as uow:
            after = {s: uow.archive.instance_files(i.study_instance_uid)[0]
                     for s, i in stored.items()}
            failures = {sop: reason for sop, reason, _ in uow.archive.compression_failures()}
        compressed = [s for s, f in after.items() if f.transfer_syntax_uid not in
                      COMPRESSIBLE_SYNTAXES]
        summary = done.stdout.strip().splitlines()[-1]
        assert summary.startswith(f"{len(compressed)} compressed, {len(failures)} left as "
                                  "they are; "), summary
        assert "ratio " in summary and ":1" in summary and "MB/s" in summary
        assert len(compressed) + len(failures) == len(stored)
        assert len(compressed) >= 60
        blobs = tmp_path / "data" / "archive"
        compressed_kinds: set[str] = set()
        for sop, row in after.items():
            name, original = by_sop[sop]
            data = (blobs / row.blob_key).read_bytes()
            if sop in failures:
                assert failures[sop], name
                assert f"left uncompressed {sop}: " in done.stderr
                assert row.transfer_syntax_uid == stored[sop].transfer_syntax_uid
                assert hashlib.sha256(data).hexdigest() == stored[sop].sha256, name
                continue
            assert row.transfer_syntax_uid == "1.2.840.10008.1.2.4.80", name
            assert row.original_sha256 == stored[sop].sha256, name
            assert hashlib.sha256(data).hexdigest() == row.sha256, name
            assert _stored_pixels_equal(original, data), f"{name}: a pixel changed"
            compressed_kinds |= _kinds(original)
            # Another implementation decodes it to the same pixels: dcmtk's dcmdjpls.
            (tmp_path / "jls.dcm").write_bytes(data)
            result = run("dcmdjpls", str(tmp_path / "jls.dcm"), str(tmp_path / "raw.dcm"))
            assert result.returncode == 0, (name, result.stderr)
            assert _stored_pixels_equal(original, (tmp_path / "raw.dcm").read_bytes()), name
        assert compressed_kinds >= {"multi-frame", "RGB", "YBR", "signed", "12 bits in 16",
                                    "odd size"}
        # Nothing of the originals is left behind.
        with factory(read_only=True) as uow:
            assert uow.archive.pending_deletions(10) == []
            keys = {f.blob_key for f in after.values()}
        files = {p.relative_to(blobs).as_posix() for p in blobs.rglob("*") if p.is_file()}
        assert files == keys
    finally:
        engine.dispose()


# -- interrupted -----------------------------------------------------------------------------


class Died(BaseException):
    """The process dies here."""


def _dying(factory: Callable[..., Any], blobs: FakeBlobStore, at: int
           ) -> tuple[Callable[..., Any], FakeBlobStore]:
    """A unit-of-work factory and a blob store that die at the ``at``-th commit, put or
    delete."""
    steps = iter(range(1, 10_000))

    def step() -> None:
        if next(steps) == at:
            raise Died()

    def units(read_only: bool = False) -> Any:
        uow = factory(read_only)
        commit = uow.commit

        def dying_commit() -> None:
            step()
            commit()

        uow.commit = dying_commit
        return uow

    class Blobs(FakeBlobStore):
        def put(self, key: str, data: bytes) -> None:
            step()
            blobs.put(key, data)

        def open(self, key: str) -> Any:
            return blobs.open(key)

        def exists(self, key: str) -> bool:
            return blobs.exists(key)

        def delete(self, key: str) -> None:
            step()
            blobs.delete(key)

    return units, Blobs()


def _consistent(factory: Callable[..., Any], blobs: FakeBlobStore,
                originals: dict[str, bytes]) -> Iterator[str]:
    with factory(read_only=True) as uow:
        rows = {i.sop_instance_uid: i for sop in originals
                for i in uow.archive.instances(sop_uids=[sop])}
        journal = {p.blob_key for p in uow.archive.pending_deletions(1000)}
    for sop, original in originals.items():
        row = rows[sop]
        if row.blob_key not in blobs.blobs:
            yield f"row without its file: {sop}"
        elif not _stored_pixels_equal(original, blobs.blobs[row.blob_key]):
            yield f"changed pixels: {sop}"
    for key in blobs.blobs:
        if key not in {r.blob_key for r in rows.values()} | journal:
            yield f"file without its row: {key}"


@pytest.mark.parametrize("die_at", range(1, 16))
def test_a_compression_interrupted_anywhere_keeps_a_readable_copy_and_finishes(
        die_at: int) -> None:
    clock = FixedClock(datetime(2026, 11, 2, 8, tzinfo=UTC))
    registry = load_authorities(DEFAULT_AUTHORITIES_FILE)
    blobs, factory = FakeBlobStore(), fake_uow_factory()
    archive = ArchiveService(registry, IdentityService(registry, clock), blobs, clock.now)
    originals = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "SC_rgb_rle_2frame.dcm (decoded)"):
        data = OBJECTS[name]
        parsed = parse_object(data)
        with factory() as uow:
            archive.accept(uow, parsed.header, data, hashlib.sha256(data).hexdigest(),
                           Sender("CHRU", "CHRU"))
            uow.commit()
        originals[parsed.header.sop_instance_uid] = data
    settings = CompressionSettings("1.2.840.10008.1.2.4.80", after_days=0)
    units, dying_blobs = _dying(factory, blobs, die_at)
    try:
        Compressor(units, dying_blobs, clock, settings).run(10, min_age_days=0)
    except Died:
        pass
    assert list(_consistent(factory, blobs, originals)) == []
    report = Compressor(factory, blobs, clock, settings).run(10, min_age_days=0)
    assert report.failed == []
    assert list(_consistent(factory, blobs, originals)) == []
    with factory(read_only=True) as uow:
        rows = [i for sop in originals for i in uow.archive.instances(sop_uids=[sop])]
        assert uow.archive.pending_deletions(10) == []
    assert {r.transfer_syntax_uid for r in rows} == {"1.2.840.10008.1.2.4.80"}
    assert sorted(blobs.blobs) == sorted(r.blob_key for r in rows)
