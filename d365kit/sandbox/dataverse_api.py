"""STUB (being written): Dataverse Web API v9.2 service."""
from d365kit.sandbox.http import Req, Resp


class DataverseService:
    def __init__(self, ctx):
        self.ctx = ctx

    def handle(self, req: Req) -> Resp:
        return Resp.json(501, {"error": {"code": "0x80040800", "message": "not yet"}})
