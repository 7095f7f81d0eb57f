"""The sandbox: a local emulator of Entra ID + Business Central API v2.0 + Dataverse Web API v9.2.

It never imports the client side of d365kit, so emulator and client cannot agree by sharing a bug.
"""
