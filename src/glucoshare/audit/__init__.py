"""Audit: an append-only, hash-chained trail of every read and change of health data."""
