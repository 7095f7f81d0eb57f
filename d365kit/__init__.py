"""d365kit: analyst toolkit for the Business Central <-> Dynamics 365 Sales integration.

The public API is ``__all__`` (pinned by tests/test_architecture.py); the layers and the internal modules
are listed in docs/architecture.md.
"""

from d365kit.config import Profile
from d365kit.errors import (
    AuthenticationError,
    AuthError,
    BadRequestError,
    CatalogError,
    ConfigError,
    ConfirmationRequired,
    ConflictError,
    D365Error,
    ForeignOriginError,
    LedgerError,
    NotFoundError,
    NotImplementedByServiceError,
    ODataError,
    SyncDirectionError,
    SyncLockedError,
    SyncPlanError,
    SyncTargetError,
    ThrottledError,
    TransportError,
    UnknownNameError,
    UsageError,
)
from d365kit.mapping import Catalog, load_catalog
from d365kit.odata.query import Q, Query
from d365kit.profiles import get_profile
from d365kit.reconcile import ReconcileResult
from d365kit.sync import SyncPlan, SyncRun
from d365kit.systems import Systems
from d365kit.workspace import Workspace, connect

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "AuthenticationError",
    "BadRequestError",
    "Catalog",
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
    "Profile",
    "Q",
    "Query",
    "ReconcileResult",
    "SyncDirectionError",
    "SyncLockedError",
    "SyncPlan",
    "SyncPlanError",
    "SyncRun",
    "SyncTargetError",
    "Systems",
    "ThrottledError",
    "TransportError",
    "UnknownNameError",
    "UsageError",
    "Workspace",
    "__version__",
    "connect",
    "get_profile",
    "load_catalog",
]
