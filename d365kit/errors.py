"""Every error d365kit raises on purpose, in one tree: ``except d365kit.D365Error`` catches them all.

::

    D365Error
    ├── ConfigError (ValueError)           a profile is missing, incomplete or impossible
    ├── AuthError                          no token: Entra's own description (never a secret)
    ├── UsageError (ValueError)            an argument the caller passed cannot work
    │   ├── UnknownNameError (KeyError)    an entity set or property $metadata does not define
    │   ├── LedgerError                    a coupling source that is not a ledger
    │   ├── SyncPlanError                  a selection that cannot become a plan
    │   │   ├── SyncDirectionError         a direction the mapping or a field forbids
    │   │   └── SyncTargetError            a plan or run made for another tenant/environment/company/org
    │   └── ConfirmationRequired           a write to a production target without confirm=True (--yes)
    ├── SyncLockedError                    another run is writing the same mappings of the same target
    ├── CatalogError (ValueError)          a mapping catalog that does not load or match $metadata
    ├── ForeignOriginError                 a URL outside the service's https origin: nothing sent
    ├── TransportError                     unreachable, cut off, or an answer that is not OData
    └── ODataError                         the service's error answer: status, code, message, correlation id
        ├── BadRequestError                400
        ├── AuthenticationError            401, 403
        ├── NotFoundError                  404
        ├── ConflictError                  409 Request_EntityChanged (BC), 412 (Dataverse)
        ├── ThrottledError                 429 after the retries were spent
        └── NotImplementedByServiceError   501

Messages say what is wrong and how to fix it; none carries a token or secret. The builtin bases
(``ValueError``, ``KeyError``) stay so that code written against them keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence


class D365Error(Exception):
    """Base of every error d365kit raises on purpose."""


class ConfigError(D365Error, ValueError):
    """A profile is missing, incomplete or asks for something impossible; the message says the fix."""


class AuthError(D365Error):
    """A token could not be acquired; the message is Entra's own description, never a secret."""


class UsageError(D365Error, ValueError):
    """An argument that cannot work (an unknown category, a malformed id, ...); the message names it."""


class UnknownNameError(UsageError, KeyError):
    """An entity set or property that the service's $metadata does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class LedgerError(UsageError):
    """A coupling source that cannot be read as a ledger (missing columns, wrong table)."""


class SyncPlanError(UsageError):
    """A selection that cannot become a plan (an unknown category, lines without their invoice, ...)."""


class SyncDirectionError(SyncPlanError):
    """A direction the mapping or one of its fields does not allow; the message names both."""


class SyncTargetError(SyncPlanError):
    """A plan or journaled run made for another target (tenant, BC environment, company, Dataverse org) than
    the profile's; the message names both."""


class ConfirmationRequired(UsageError):
    """A write to a production target without an explicit confirmation (``confirm=True``, ``--yes``, the
    typed confirmation of the selective-sync panel); the message states the counts and the target."""


class SyncLockedError(D365Error):
    """Another run (on this machine) holds the lock of a mapping of the same target; the message says which
    run, its process and since when."""


class CatalogError(D365Error, ValueError):
    """A catalog that does not load or does not match the services' ``$metadata``; ``issues`` lists each."""

    def __init__(self, issues: Sequence[object]):
        self.issues = list(issues)
        super().__init__(
            f"{len(self.issues)} catalog problem(s):\n" + "\n".join(f"- {i}" for i in self.issues)
        )


class ForeignOriginError(D365Error):
    """A URL outside the service's own https origin: refused before anything is sent (no token leaves)."""


class TransportError(D365Error):
    """The service could not be reached, or its answer was cut off or unreadable."""


class ODataError(D365Error):
    """An error answer of BC or Dataverse: status, code, message and correlation id."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        correlation_id: str | None = None,
        *,
        method: str | None = None,
        url: str | None = None,
        retry_after: float | None = None,
    ):
        self.status = status
        self.code = code
        self.message = message
        self.correlation_id = correlation_id
        self.method = method
        self.url = url
        self.retry_after = retry_after
        where = f" ({method} {url})" if method and url else ""
        corr = f" [correlation id {correlation_id}]" if correlation_id else ""
        super().__init__(f"HTTP {status} {code}: {message}{where}{corr}")


class BadRequestError(ODataError):
    """400: the request itself is wrong (unknown field, malformed filter, invalid value)."""


class AuthenticationError(ODataError):
    """401/403: the token was refused or lacks permission."""


class NotFoundError(ODataError):
    """404: the entity set, row or route does not exist."""


class ConflictError(ODataError):
    """The row changed since it was read (BC 409 Request_EntityChanged, Dataverse 412)."""


class ThrottledError(ODataError):
    """429 after the retries were spent (service protection limits)."""


class NotImplementedByServiceError(ODataError):
    """501: the service (or the sandbox) does not implement what was asked."""


__all__ = [
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "CatalogError",
    "ConfigError",
    "ConfirmationRequired",
    "ConflictError",
    "D365Error",
    "ForeignOriginError",
    "LedgerError",
    "NotFoundError",
    "NotImplementedByServiceError",
    "ODataError",
    "SyncDirectionError",
    "SyncLockedError",
    "SyncPlanError",
    "SyncTargetError",
    "ThrottledError",
    "TransportError",
    "UnknownNameError",
    "UsageError",
]
