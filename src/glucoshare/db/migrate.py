"""Create or migrate the schema with Alembic (the migrations ship inside the package)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from glucoshare.vault.service import bound_keyring

SCRIPT_LOCATION = "glucoshare:migrations"


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration bound to ``engine`` (no alembic.ini needed).

    Migrations that seal stored data find the engine's key ring under ``attributes["keyring"]``.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    config.attributes["keyring"] = bound_keyring(engine)
    return config


def upgrade(engine: Engine, revision: str = "head", *, data_dir: Path | None = None) -> None:
    """Bring the schema to ``revision`` (default: the newest).

    ``data_dir`` is the data folder, where earlier versions kept raw uploaded files
    (``uploads/``) and held clinic uploads (``pending/``), for the migrations that convert them or
    move them into the database; files a migration replaced are removed only once it has committed.
    """
    config = alembic_config(engine)
    config.attributes["data_dir"] = data_dir
    config.attributes["raw_files_dir"] = None if data_dir is None else data_dir / "uploads"
    command.upgrade(config, revision)
    for legacy in config.attributes.get("legacy_raw_files", []):
        legacy.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            legacy.parent.rmdir()  # only when no other file is left in the folder
            legacy.parent.parent.rmdir()
