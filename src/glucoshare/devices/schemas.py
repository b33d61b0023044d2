"""Outputs of the devices domain."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict


class DeviceOut(BaseModel):
    """A device as the command line and the API show it."""

    model_config = ConfigDict(from_attributes=True)

    manufacturer: str
    model: str
    serial: str | None


class DeviceListedOut(DeviceOut):
    """A patient's device with its id (to assign or move it) and when it was first seen."""

    id: str
    created_at: dt.datetime
