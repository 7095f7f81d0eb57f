"""HTTP session shared by msal and the OData clients."""

from __future__ import annotations

from typing import Any

import requests


class PinnedSession(requests.Session):
    """A requests Session whose own ``verify`` always applies.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``Session.verify`` (the environment is
    merged per request and wins over the session setting), which breaks a client that must trust exactly
    one CA, such as the sandbox's. Passing ``verify`` on every request keeps the session's choice.
    """

    def __init__(self, verify: bool | str = True):
        super().__init__()
        self.verify = verify

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)
