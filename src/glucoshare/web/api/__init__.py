"""The REST API under ``/v1`` (OpenAPI at ``/openapi.json``, browsable at ``/docs``)."""
