"""STUB (being written): the gate in front of the services: auth, service protection, latency, faults."""


class Gate:
    def __init__(self, app, ctx):
        self.app, self.ctx = app, ctx

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)
