"""Sharing: clinics and their members, shares with clinics and care partners, invitations.

Every decision about who may reach a patient's data is made in :mod:`glucoshare.sharing.access`.
"""
