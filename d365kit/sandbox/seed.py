"""STUB (being written): deterministic CRONUS-shaped seed with planted problems."""


def seed(store, *, scale=None) -> dict:
    return {"problems": []}
