"""Encryption at rest: the master key file, per-subject data keys and sealed columns.

Identifying data (names, birth dates, e-mail addresses, MRNs, notes, second-factor secrets, file
names and the raw uploaded files) is encrypted with AES-256-GCM under a data key of its own subject
(a patient or a user). Data keys are stored wrapped by the master key, which lives in a file
outside the database (``GLUCOSHARE_SECRET_KEY_FILE``). Deleting a subject destroys its data key,
so what a backup still holds of them can no longer be read.
"""
