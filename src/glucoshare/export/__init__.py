"""Exports of a patient's data: canonical CSV and JSON with provenance, and FHIR R4 (HL7 CGM guide)."""
