"""DICOM objects for tests: pydicom's bundled test files re-labelled per site, and the dcmtk
tools (`storescu`, `findscu`, `getscu`, `movescu`) as real peers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

# Bundled with pydicom (never downloaded), one per transfer syntax the archive must keep.
UNCOMPRESSED_CT = "CT_small.dcm"  # explicit VR little endian
UNCOMPRESSED_MR = "MR_small.dcm"
JPEG2000_LOSSLESS = "MR_small_jp2klossless.dcm"
JPEGLS_LOSSLESS = "MR_small_jpeg_ls_lossless.dcm"
RLE = "MR_small_RLE.dcm"
JPEG_LOSSLESS = "SC_rgb_jpeg_gdcm.dcm"
# storescu's option proposing each file's transfer syntax.
PROPOSE = {UNCOMPRESSED_CT: "-xe", UNCOMPRESSED_MR: "-xe", JPEG2000_LOSSLESS: "-xv",
           JPEGLS_LOSSLESS: "-xt", RLE: "-xr", JPEG_LOSSLESS: "-xs"}


def bundled(name: str) -> Path:
    """A test file shipped inside pydicom (fails instead of downloading)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not bundled with this pydicom")
    return Path(path)


def relabel(name: str, *, patient_id: str, study: str, series: str, sop: str,
            family: str = "DUPONT", given: str = "HELENE", birth: str = "19800102",
            sex: str = "F", issuer: str | None = None, **attributes: object) -> bytes:
    """A bundled file as one site would send it: its patient, its UIDs; pixels untouched."""
    dataset = dcmread(bundled(name))
    dataset.PatientID = patient_id
    dataset.PatientName = f"{family}^{given}"
    dataset.PatientBirthDate = birth
    dataset.PatientSex = sex
    for keyword in ("IssuerOfPatientID", "OtherPatientIDsSequence", "OtherPatientIDs",
                    "IssuerOfPatientIDQualifiersSequence"):
        if keyword in dataset:
            delattr(dataset, keyword)
    if issuer is not None:
        dataset.IssuerOfPatientID = issuer
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = series
    dataset.SOPInstanceUID = sop
    dataset.file_meta.MediaStorageSOPInstanceUID = sop
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    out = BytesIO()
    dataset.save_as(out, enforce_file_format=True)
    return out.getvalue()


def read(data: bytes | Path) -> Dataset:
    return dcmread(BytesIO(data) if isinstance(data, bytes) else data)


def dcmtk(tool: str) -> str:
    """The dcmtk program (pynetdicom installs apps of the same names in the virtualenv)."""
    venv = Path(sys.prefix).resolve()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / tool
        if candidate.is_file() and os.access(candidate, os.X_OK) and venv not in (
                candidate.resolve().parents):
            return str(candidate)
    found = shutil.which(tool, path="/usr/bin:/usr/local/bin")
    if found is None:
        raise FileNotFoundError(f"dcmtk's {tool} is not installed (apt-get install dcmtk)")
    return found


def run(tool: str, *arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # TCP_NODELAY=1: dcmtk otherwise leaves Nagle's algorithm on, and each small DIMSE message
    # waits for a delayed ACK (about 40 ms).
    return subprocess.run([dcmtk(tool), *arguments], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, "TCP_NODELAY": "1"})
