"""CGM statistics of a patient and of a clinic's population: the stats document and daily aggregates."""
