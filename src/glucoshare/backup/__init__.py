"""Backup and restore: the whole database in one logical, engine-neutral, encrypted file.

A backup is a zip archive encrypted as a whole: every table of the schema as a stream of JSON lines
(in foreign-key order, read in one consistent snapshot; kept raw files are rows of ``sealed_files``),
and a manifest with each stream's row count and SHA-256, each in a member encrypted with STREAM
over AES-256-GCM under a key derived from the installation's master key (a clear header says which
key file opens it). The master key file itself is never in a backup. ``docs/cli.md`` has the
commands, ``docs/reliability.md`` the format and what to keep where.
"""
