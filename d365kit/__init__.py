"""d365kit: analyst toolkit for the Business Central <-> Dynamics 365 Sales integration."""

from d365kit.config import ConfigError, Profile, get_profile
from d365kit.mapping import Catalog, CatalogError, load_catalog
from d365kit.odata.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    D365Error,
    ForeignOriginError,
    NotFoundError,
    ODataError,
    ThrottledError,
    TransportError,
)
from d365kit.odata.query import Q, Query
from d365kit.reconcile import ReconcileResult
from d365kit.sync import SyncPlan, SyncRun
from d365kit.workspace import Workspace, connect

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Catalog",
    "CatalogError",
    "ConfigError",
    "ConflictError",
    "D365Error",
    "ForeignOriginError",
    "NotFoundError",
    "ODataError",
    "Profile",
    "Q",
    "Query",
    "ReconcileResult",
    "SyncPlan",
    "SyncRun",
    "ThrottledError",
    "TransportError",
    "Workspace",
    "__version__",
    "connect",
    "get_profile",
    "load_catalog",
]
