"""Backup and restore: the whole database and the data directory's files in one logical, engine-neutral file.

A backup is a zip archive: every table of the schema as a stream of JSON lines (in foreign-key
order, read in one consistent snapshot), the sealed raw files that the rows refer to, and a manifest
with each stream's row count and SHA-256, sealed with a keyed hash under the installation's key
file. The master key file itself is never in a backup. ``docs/cli.md`` has the commands.
"""
