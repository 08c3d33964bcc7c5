"""DICOM: reading headers, storing objects, coercing patient attributes on the way out, the
DIMSE service (C-STORE, C-FIND, C-GET, C-MOVE) and the DICOMweb operations."""
