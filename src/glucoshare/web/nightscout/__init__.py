"""The Nightscout-compatible API (``/api/v1``, ``/api/v2``, ``/api/v3``, ``/pebble``)."""
