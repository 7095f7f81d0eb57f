"""d365kit: analyst toolkit for the Business Central <-> Dynamics 365 Sales integration."""

__version__ = "0.1.0"

__all__ = ["__version__"]
