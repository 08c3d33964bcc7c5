"""DICOMweb over HTTP (``/dicomweb``): the routes of QIDO-RS, WADO-RS and STOW-RS. The DICOM
work itself is the container's ``dicomweb`` part (``adapters/dicom/web.py``)."""

from adapters.dicomweb.routes import router

__all__ = ["router"]
