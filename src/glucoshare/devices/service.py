"""Find or create the device rows an import needs, and keep each device with one patient."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from glucoshare.devices.errors import DeviceOwnedByAnotherPatientError
from glucoshare.devices.models import Device, DeviceIdentifier


def device_key(manufacturer: str, model: str, serial: str | None, patient_id: str) -> str:
    """The natural key of a physical device.

    With a serial number the key is global (``manufacturer|model|SERIAL``), so the same pump or
    reader is one row whoever uploads it; without one it is scoped to the patient.
    """
    base = f"{manufacturer.strip().lower()}|{model.strip().lower()}"
    if serial and serial.strip():
        return f"{base}|{serial.strip().upper()}"
    return f"{base}|patient:{patient_id}"


def resolve_device(
    session: Session,
    *,
    patient_id: str,
    manufacturer: str,
    model: str,
    serial: str | None,
    identifiers: Iterable[tuple[str, str]] = (),
) -> Device:
    """Return the patient's device with this identity, creating it on first sight.

    Raises :class:`DeviceOwnedByAnotherPatientError` when the serial number, or any of
    ``identifiers`` (kind, value), is already recorded for another patient.
    """
    key = device_key(manufacturer, model, serial, patient_id)
    device = session.scalar(select(Device).where(Device.device_key == key))
    if device is not None and device.patient_id != patient_id:
        msg = f"device {manufacturer} {model} serial {serial} belongs to another patient"
        raise DeviceOwnedByAnotherPatientError(msg)
    if device is None:
        device = Device(
            patient_id=patient_id,
            manufacturer=manufacturer.strip(),
            model=model.strip(),
            serial=serial.strip() if serial else None,
            device_key=key,
        )
        session.add(device)
        session.flush()
    wanted = sorted(set(identifiers))
    owners = _identifier_owners(session, wanted)
    for kind, value in wanted:
        owner = owners.get((kind, value))
        if owner is None:
            session.add(DeviceIdentifier(device_seq=device.seq, kind=kind, value=value))
        elif owner.device_seq != device.seq and owner.device.patient_id != patient_id:
            msg = f"{kind} {value} belongs to another patient's device"
            raise DeviceOwnedByAnotherPatientError(msg)
    session.flush()
    return device


_LOOKUP_CHUNK = 500
"""Identifier values looked up per query (far below either engine's limit on parameters)."""


def _identifier_owners(
    session: Session, wanted: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], DeviceIdentifier]:
    """The recorded identifiers among ``wanted`` (kind, value), by (kind, value): a query per kind."""
    found: dict[tuple[str, str], DeviceIdentifier] = {}
    for kind in sorted({kind for kind, _ in wanted}):  # (kind, value) is the unique index
        values = sorted(value for of_kind, value in wanted if of_kind == kind)
        for start in range(0, len(values), _LOOKUP_CHUNK):
            chunk = values[start : start + _LOOKUP_CHUNK]
            rows = session.scalars(
                select(DeviceIdentifier).where(
                    DeviceIdentifier.kind == kind, DeviceIdentifier.value.in_(chunk)
                )
            )
            found.update(((row.kind, row.value), row) for row in rows)
    return found


def list_devices(session: Session, patient_id: str) -> list[Device]:
    """The patient's devices, oldest first."""
    return list(
        session.scalars(select(Device).where(Device.patient_id == patient_id).order_by(Device.created_at))
    )
