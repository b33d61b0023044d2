"""Analytics: pure, typed NumPy. No database and no web imports; inputs are never mutated."""

from glucoshare.analytics.summary import GlucoseSummary, glucose_summary

__all__ = ["GlucoseSummary", "glucose_summary"]
