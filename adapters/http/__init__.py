"""The shared base of every HTTP router: the application factory, the dependencies each route
takes (the container, the caller, the access trail) and the JSON errors of the non-FHIR routes.

The routers (``adapters/api``, ``adapters/fhir``, ``adapters/dicomweb``) import this package
and never each other; the composition root (``adapters/bootstrap.py``) puts them together
into one application.
"""
