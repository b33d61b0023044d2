"""Storage: the declarative base, engines, units of work and migrations."""

from glucoshare.db.base import Base, new_id, utcnow
from glucoshare.db.session import create_db_engine, session_scope

__all__ = ["Base", "create_db_engine", "new_id", "session_scope", "utcnow"]
