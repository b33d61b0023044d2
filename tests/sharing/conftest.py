"""The web fixtures (app settings, people) for the sharing tests."""

from tests.web.conftest import app_settings, client, mail, mail_client

__all__ = ["app_settings", "client", "mail", "mail_client"]
