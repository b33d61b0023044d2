"""Audit event tags, named ``scope:resource:action``."""

import enum


class AuditTag(enum.StrEnum):
    """What happened. Every value is documented in docs/audit.md (a test keeps them in step)."""

    PATIENT_CREATE = "accounts:patient:create"
    PATIENT_LIST = "accounts:patient:list"
    PATIENT_DELETE = "accounts:patient:delete"
    USER_CREATE = "accounts:user:create"
    USER_SECOND_FACTOR = "accounts:user:second-factor"
    USER_EMAIL_VERIFIED = "accounts:user:email-verified"
    LOGIN_SUCCESS = "accounts:login:success"
    LOGIN_FAILURE = "accounts:login:failure"
    PASSWORD_RESET_REQUEST = "accounts:password:reset-request"
    PASSWORD_RESET = "accounts:password:reset"
    TOKEN_CREATE = "accounts:token:create"
    UPLOAD_CREATE = "ingest:upload:create"
    UPLOAD_LIST = "records:upload:list"
    UPLOAD_DELETE = "records:upload:delete"
    RECORDS_READ = "records:data:read"
    RECORDS_EXPORT = "records:data:export"
    ACCESS_LOG_READ = "audit:access-log:read"
    STATS_READ = "summaries:stats:read"
    POPULATION_READ = "summaries:population:read"
