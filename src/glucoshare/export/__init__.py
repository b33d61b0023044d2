"""Exports of a patient's data: canonical CSV and JSON with provenance (FHIR follows)."""
