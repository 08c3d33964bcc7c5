"""DICOMweb over HTTP (``/dicomweb``): the routes of QIDO-RS, WADO-RS (with the frames, bulk
data, rendered and thumbnail resources a web viewer uses) and STOW-RS. The DICOM work itself
is the container's ``dicomweb`` part (``adapters/dicom/web.py``)."""

from fastapi import APIRouter

from adapters.dicomweb import frames, rendered, routes

__all__ = ["router"]

router = APIRouter()
for _part in (routes.router, frames.router, rendered.router):
    router.include_router(_part)
