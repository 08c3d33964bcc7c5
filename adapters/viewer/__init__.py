"""The OHIF viewer: installing its prebuilt ``dist/`` (`mpi viewer install`), serving it at
the root of its own origin beside ``/dicomweb``, and the console's route that opens a study
in it."""

from adapters.viewer.install import (
    OHIF_PACKAGE,
    OHIF_VERSION,
    ViewerInstallError,
    install,
    installed,
)
from adapters.viewer.routes import router

__all__ = ["OHIF_PACKAGE", "OHIF_VERSION", "ViewerInstallError", "install", "installed", "router"]
