"""``glucoshare db upgrade``."""

from __future__ import annotations

import typer

from glucoshare.cli.runtime import engine, handle_errors, stdout

app = typer.Typer(help="Manage the database schema.", no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def upgrade_command() -> None:
    """Create or migrate the schema to the newest revision."""
    db = engine()
    stdout.print(f"schema up to date ({db.url.get_backend_name()})")
