"""`mpi viewer install`: the pinned ``@ohif/app`` package fetched with npm (the registry's
tarball, its prebuilt ``dist/``; nothing is built here), unpacked into the viewer folder,
and an ``app-config.js`` that points OHIF at this service's ``/dicomweb`` on the viewer's own
origin (same origin: the console's session cookie authenticates OHIF's requests).

OHIF's optional onnxruntime (``dist/ort/``, 136 MB, used only by its AI segmentation tools)
is left out unless asked for. Installing again the same version is a no-op.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from adapters.errors import AdapterError

__all__ = ["OHIF_PACKAGE", "OHIF_VERSION", "ViewerInstallError", "Installed", "install",
           "installed", "app_config", "DICOMWEB_ROOT"]

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
DICOMWEB_ROOT = "/dicomweb"
_MARKER = "installed.json"
_OPTIONAL = ("ort/",)  # onnxruntime: OHIF's AI tools only


class ViewerInstallError(AdapterError):
    """The viewer could not be installed: npm missing or failing, an unexpected package."""


@dataclass(frozen=True)
class Installed:
    folder: Path  # the dist folder served at the viewer origin's root
    version: str
    size: int  # bytes on disk
    fresh: bool  # False: this version was there already


def installed(folder: Path) -> Path | None:
    """The dist folder of a viewer installed in ``folder``, None when there is none."""
    dist = folder / "dist"
    return dist if (dist / "index.html").is_file() and (folder / _MARKER).is_file() else None


def app_config(dicomweb_root: str = DICOMWEB_ROOT) -> str:
    """OHIF's configuration: one DICOMweb data source, this service's, on the same origin
    (QIDO-RS with includefield and fuzzy matching, WADO-RS frames and metadata with bulk
    data URIs, rendered thumbnails); no demo server, no URL-driven data source."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "mpi",
        "configuration": {
            "friendlyName": "Nancy MPI",
            "name": "mpi",
            "wadoUriRoot": dicomweb_root,
            "qidoRoot": dicomweb_root,
            "wadoRoot": dicomweb_root,
            "qidoSupportsIncludeField": True,
            "supportsReject": False,
            "supportsStow": False,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video,pdf",
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True},
            "requestOptions": {"requestCredentials": "same-origin"},
        },
    }
    config = {
        "name": "nancy-mpi",
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 10},
        "showErrorDetails": "production",
        "defaultDataSourceName": "mpi",
        "dataSources": [source],
    }
    return ("/** OHIF configuration written by `mpi viewer install`: this service's DICOMweb "
            "on the viewer's own origin. */\n"
            f"window.config = {json.dumps(config, indent=2)};\n")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ViewerInstallError("npm is needed to fetch the viewer (apt-get install npm, or "
                                 "Node.js from nodejs.org)")
    return npm


def _fetch(workdir: Path, version: str) -> Path:
    """The package's tarball, fetched by npm from its registry (``npm pack``: no scripts
    run, no dependency installed: the dist is prebuilt)."""
    try:
        done = subprocess.run([_npm(), "pack", f"{OHIF_PACKAGE}@{version}", "--silent"],
                              cwd=workdir, capture_output=True, text=True, timeout=900,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ViewerInstallError(f"npm pack {OHIF_PACKAGE}@{version} failed: {exc}") from exc
    if done.returncode != 0:
        raise ViewerInstallError(f"npm pack {OHIF_PACKAGE}@{version} failed: "
                                 f"{(done.stderr or done.stdout).strip()[-600:]}")
    tarballs = sorted(workdir.glob("*.tgz"))
    if not tarballs:
        raise ViewerInstallError(f"npm pack {OHIF_PACKAGE}@{version} gave no tarball")
    return tarballs[0]


def _unpack(tarball: Path, dist: Path, with_onnxruntime: bool) -> int:
    """Unpack ``package/dist/`` into ``dist``; returns the bytes written. Refuses members
    that would land outside it."""
    size = 0
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            if path.parts[:2] != ("package", "dist") or not member.isfile():
                continue
            inside = PurePosixPath(*path.parts[2:])
            if ".." in inside.parts or inside.is_absolute():
                raise ViewerInstallError(f"the package holds an unsafe path {member.name}")
            if not with_onnxruntime and str(inside).startswith(_OPTIONAL):
                continue
            target = dist / inside
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            size += member.size
    if not (dist / "index.html").is_file():
        raise ViewerInstallError(f"{tarball.name} has no dist/index.html: not OHIF's "
                                 "prebuilt application")
    return size


def install(folder: Path, version: str = OHIF_VERSION, with_onnxruntime: bool = False,
            dicomweb_root: str = DICOMWEB_ROOT) -> Installed:
    """Install OHIF ``version`` into ``folder`` (its ``dist/`` and a marker saying which
    version); its app-config.js is rewritten on every call. The previous installation is
    replaced only once the new one is complete. Raises ViewerInstallError."""
    marker = folder / _MARKER
    dist = folder / "dist"
    if installed(folder) is not None:
        known = json.loads(marker.read_text(encoding="utf-8"))
        if known.get("version") == version and known.get("onnxruntime") == with_onnxruntime:
            (dist / "app-config.js").write_text(app_config(dicomweb_root), encoding="utf-8")
            return Installed(dist, version, int(known.get("size", 0)), fresh=False)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".install-") as work:
        workdir = Path(work)
        size = _unpack(_fetch(workdir, version), workdir / "dist", with_onnxruntime)
        (workdir / "dist" / "app-config.js").write_text(app_config(dicomweb_root),
                                                        encoding="utf-8")
        marker.unlink(missing_ok=True)
        if dist.exists():
            shutil.rmtree(dist)
        (workdir / "dist").rename(dist)
    marker.write_text(json.dumps({"package": OHIF_PACKAGE, "version": version,
                                  "onnxruntime": with_onnxruntime, "size": size}),
                      encoding="utf-8")
    return Installed(dist, version, size, fresh=True)
