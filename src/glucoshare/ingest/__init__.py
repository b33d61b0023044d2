"""Ingest: vendor importers as plugins (detect → parse → normalise) and the import service."""
