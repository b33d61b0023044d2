"""Settings: one pydantic-settings object, built on demand and injected, never read at import time.

Every field reads the environment variable ``GLUCOSHARE_<NAME>`` (or a ``.env`` file in the working
directory). The public ones are fixed by CONTRACT.md; ``docs/configuration.md`` documents them all and
a test keeps the two in step.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_UPLOAD_BYTES = 200 * 1024 * 1024


class Settings(BaseSettings):
    """Runtime configuration of one Glucoshare installation."""

    model_config = SettingsConfigDict(
        env_prefix="GLUCOSHARE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL: sqlite:///PATH or postgresql+psycopg://...; "
        "default: an SQLite file in the data directory.",
    )
    data_dir: Path = Field(
        default=Path(".glucoshare"),
        description="Where the default database, keys, outbox and uploaded raw files live.",
    )
    secret_key_file: Path | None = Field(
        default=None,
        description="Master key for encryption at rest and signing; default $DATA_DIR/master.key.",
    )
    smtp_url: str | None = Field(
        default=None,
        description="smtp://user:pass@host:port or smtps://...; unset writes mails to $DATA_DIR/outbox/.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public URL used in e-mails and links.",
    )
    max_upload_bytes: int = Field(
        default=DEFAULT_MAX_UPLOAD_BYTES,
        gt=0,
        description="Largest file accepted by an import, in bytes (default 200 MB).",
    )
    max_archive_members: int = Field(
        default=1000,
        gt=0,
        description="Most files one zip archive or folder given to an import may hold.",
    )
    max_unpacked_bytes: int = Field(
        default=1_000_000_000,
        gt=0,
        description="Largest total size of the files inside one archive or folder, in bytes (1 GB).",
    )

    parse_process_min_chars: int = Field(
        default=1 << 20,
        ge=0,
        description=(
            "An import into SQLite whose files hold at least this many characters is parsed in a "
            "child process while the records are stored (Linux only; 0: every import)."
        ),
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str | None) -> str | None:
        """Accept ``postgresql://`` and ``postgres://`` URLs and use the psycopg 3 driver for them."""
        if value is None or not value.strip():
            return None
        value = value.strip()
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @property
    def effective_database_url(self) -> str:
        """The database URL in force: the configured one or the SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'glucoshare.db').resolve()}"

    @property
    def effective_secret_key_file(self) -> Path:
        """Path of the master key file."""
        return self.secret_key_file or self.data_dir / "master.key"


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
