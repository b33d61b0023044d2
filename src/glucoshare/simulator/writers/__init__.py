"""Writers of simulated timelines in each vendor's export layout.

Each writer returns a :class:`~glucoshare.simulator.writers.base.WrittenExport`: the file's bytes
and the canonical records an importer must read back from exactly those bytes.
"""
