"""Devices: one row per physical device (pump, CGM system, meter, app installation)."""
