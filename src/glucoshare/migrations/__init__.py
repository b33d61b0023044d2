"""Alembic migrations of the Glucoshare schema."""
