"""STUB (being written): Entra-like identity endpoints and token verification."""


class TokenError(Exception):
    pass


class Identity:
    def __init__(self, ctx, km):
        self.ctx, self.km = ctx, km

    def routes(self):
        return []

    def verify(self, token: str, audience: str) -> dict:
        raise TokenError("not yet")
