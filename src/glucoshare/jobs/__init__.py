"""Background jobs on PostgreSQL: summary refreshes, e-mail delivery and maintenance (procrastinate).

Work that need not hold up a request is deferred to a queue that lives in the database
(procrastinate's tables) and run by ``glucoshare worker`` processes. A job is deferred inside the
request's own transaction, so it exists exactly when the request's data does. On SQLite, the
embedded single-process default, the same work runs in the process that asks for it.
"""
