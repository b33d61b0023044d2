"""``glucoshare keys rotate``: put a new master key in force and re-wrap every data key under it."""

from __future__ import annotations

import typer

from glucoshare.audit.service import record_event
from glucoshare.audit.tags import AuditTag
from glucoshare.cli.runtime import (
    JsonOption,
    actor,
    handle_errors,
    print_json,
    settings,
    stdout,
    unit_of_work,
)
from glucoshare.vault.service import retire_master_keys, rotate_master_key

app = typer.Typer(help="The master key of encryption at rest.", no_args_is_help=True)


@app.command("rotate")
@handle_errors
def rotate(as_json: JsonOption = False) -> None:
    """Replace the master key: re-wrap every data key, then drop the old key from the key file.

    Safe to interrupt and run again: the old key stays in the file until every data key is
    re-wrapped and committed. Back up the new key file (GLUCOSHARE_SECRET_KEY_FILE) afterwards.
    """
    key_file = settings().effective_secret_key_file
    with unit_of_work() as session:
        rotation = rotate_master_key(session, key_file)
        record_event(
            session,
            actor=actor(),
            action=AuditTag.MASTER_KEY_ROTATE,
            target=rotation.master_key,
            details={"rewrapped": rotation.rewrapped},
        )
    with unit_of_work() as session:
        rotation.retired = retire_master_keys(session, key_file)
    if as_json:
        print_json(rotation)
        return
    stdout.print(
        f"master key {rotation.master_key} in force: {rotation.rewrapped} data keys re-wrapped, "
        f"{len(rotation.retired)} old keys removed from {key_file}",
        markup=False,
    )
