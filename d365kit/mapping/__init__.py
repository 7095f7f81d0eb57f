"""Mapping model, the default catalog of BC's twelve integration mappings, and value transforms."""

from d365kit.mapping.loader import DEFAULT_CATALOG, Issue, check, dv_column, load_catalog, load_live, validate
from d365kit.mapping.model import STATIC, TENANT, Catalog, FieldMapping, OptionMap, TableMapping

__all__ = [
    "DEFAULT_CATALOG",
    "STATIC",
    "TENANT",
    "Catalog",
    "FieldMapping",
    "Issue",
    "OptionMap",
    "TableMapping",
    "check",
    "dv_column",
    "load_catalog",
    "load_live",
    "validate",
]
