"""Data sets: records that apps and uploaders send through the native upload API."""
