"""The web fixtures (app settings, client) for the report tests."""

from tests.web.conftest import app_settings, client, mail, mail_client

__all__ = ["app_settings", "client", "mail", "mail_client"]
