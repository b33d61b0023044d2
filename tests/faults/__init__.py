"""Fault tests: processes killed mid-import, database connections lost, a full disk."""
