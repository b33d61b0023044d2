"""The HTTP side of Glucoshare: the REST API under ``/v1`` (and, later, web pages and the Nightscout API)."""
