"""STUB (being written): Business Central API v2.0 + companion API service."""
from d365kit.sandbox.http import Req, Resp


class BCService:
    def __init__(self, ctx):
        self.ctx = ctx

    def handle(self, req: Req) -> Resp:
        return Resp.json(501, {"error": {"code": "NotImplemented", "message": "not yet"}})
