"""Outputs of the devices domain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DeviceOut(BaseModel):
    """A device as the command line and the API show it."""

    model_config = ConfigDict(from_attributes=True)

    manufacturer: str
    model: str
    serial: str | None
