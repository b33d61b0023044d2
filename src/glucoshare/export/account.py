"""Everything Glucoshare holds about an account, as one machine-readable zip (GDPR art. 15 and 20).

``account.json`` (profile, target range, sessions, API tokens without their values, and who
accessed the data), ``records.json`` (every canonical record with its provenance, devices and
uploads: the JSON export) and ``raw/`` (every uploaded file as it arrived).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tempfile
import zipfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare import __version__
from glucoshare.accounts.access import own_patient
from glucoshare.accounts.models import ApiToken, AuthSession, User
from glucoshare.accounts.profile import profile
from glucoshare.audit.service import access_log
from glucoshare.export.service import export_patient
from glucoshare.ingest.service import read_raw
from glucoshare.records.models import Upload

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def export_account(session: Session, user: User, out: Path) -> Path:
    """Write the account's export to ``out`` (a zip, owner-only) and return it."""
    patient = own_patient(session, user)
    document: dict[str, object] = {
        "format": "glucoshare-account-export",
        "version": 1,
        "generator": f"glucoshare {__version__}",
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **profile(session, user).model_dump(mode="json"),
        "sessions": [
            {
                "id": s.id,
                "created_at": s.created_at.isoformat(),
                "last_seen_at": s.last_seen_at.isoformat(),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "revoked_at": None if s.revoked_at is None else s.revoked_at.isoformat(),
            }
            for s in session.scalars(select(AuthSession).where(AuthSession.user_id == user.id))
        ],
    }
    with tempfile.TemporaryDirectory() as scratch, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        if patient is not None:
            document["api_tokens"] = [
                {
                    "id": t.id,
                    "kind": t.kind,
                    "created_at": t.created_at.isoformat(),
                    "last_used_at": None if t.last_used_at is None else t.last_used_at.isoformat(),
                    "revoked_at": None if t.revoked_at is None else t.revoked_at.isoformat(),
                }
                for t in session.scalars(select(ApiToken).where(ApiToken.patient_id == patient.id))
            ]
            document["access_log"] = [e.model_dump(mode="json") for e in access_log(session, patient.id)]
            records = Path(scratch) / "records.json"
            export_patient(session, patient=patient, fmt="json", out=records)
            archive.write(records, "records.json")
            for upload in session.scalars(select(Upload).where(Upload.patient_id == patient.id)):
                raw = read_raw(session, upload)
                if raw is not None:
                    name = _UNSAFE.sub("_", upload.file_name or "upload")[:120]
                    archive.writestr(f"raw/{upload.id}/{name}", raw)
        archive.writestr("account.json", json.dumps(document, ensure_ascii=False, indent=2))
    out.chmod(0o600)
    return out
