"""Errors of the audit domain."""

from glucoshare.errors import InputError


class AuditChainBrokenError(InputError):
    """The audit trail was changed after it was written."""

    code = "audit_chain_broken"
