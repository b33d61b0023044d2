"""A simulator of people with diabetes and of the files their devices' vendor portals export.

:func:`glucoshare.simulator.physiology.simulate` makes a patient's true timeline (CGM trace with
meals, insulin, exercise, sensor sessions with warm-ups and gaps, out-of-range values, daylight
saving); the modules in :mod:`glucoshare.simulator.writers` write that timeline in each vendor's
layout with its quirks. Tests, ``glucoshare demo`` and the benchmarks use it.
"""

from glucoshare.simulator.physiology import simulate
from glucoshare.simulator.timeline import PatientProfile, Timeline

__all__ = ["PatientProfile", "Timeline", "simulate"]
