"""Entity set definitions of BC API v2.0, Dataverse Web API v9.2 and the companion API (see schema.py)."""
