"""Nightscout-compatible data: documents, queries and the service behind the API."""
