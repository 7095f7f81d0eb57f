"""Raw HTTPS access to a sandbox for the sync tests: set-up and checks that do not go through d365kit's
writes (plain requests with the demo app's token, the APIs' own wire format)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import requests
from helpers import auth


class _Pinned(requests.Session):
    """Keep-alive session that trusts exactly the sandbox CA (``REQUESTS_CA_BUNDLE`` cannot override it)."""

    def __init__(self, ca_bundle: str):
        super().__init__()
        self.ca_bundle = ca_bundle

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        kwargs["verify"] = self.ca_bundle
        return super().request(method, url, *args, **kwargs)


class Raw:
    """BC (API v2.0 and companion) and Dataverse of one running sandbox, through plain requests."""

    def __init__(self, info: dict[str, Any], company: str = "CRONUS USA, Inc."):
        self.info = info
        self.http = _Pinned(info["ca_bundle"])
        self.bc_root = info["bc_url"] + "/"
        self.companion_root = info["bc_companion_url"] + "/"
        self.dv_root = info["dataverse_api_url"] + "/"
        companies = self._get(self.bc_root + "companies", "bc")["value"]
        self.company = next(c["id"] for c in companies if c["name"] == company)

    def close(self) -> None:
        self.http.close()

    def _headers(self, service: str) -> dict[str, str]:
        scope = self.info["bc_scope"] if service == "bc" else self.info["dataverse_scope"]
        return {**auth(self.info, scope), "Accept": "application/json"}

    def _get(self, url: str, service: str) -> dict[str, Any]:
        resp = self.http.get(url, headers=self._headers(service), timeout=60)
        resp.raise_for_status()
        return resp.json()

    def _all(self, url: str, service: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while url:
            page = self._get(url, service)
            rows += page["value"]
            url = page.get("@odata.nextLink")
        return rows

    # -- BC ------------------------------------------------------------------------------------------

    def bc_url(self, entity_set: str, api: str = "bc") -> str:
        root = self.bc_root if api == "bc" else self.companion_root
        return f"{root}companies({self.company})/{entity_set}"

    def bc_rows(self, entity_set: str, query: str = "", api: str = "bc") -> list[dict[str, Any]]:
        return self._all(self.bc_url(entity_set, api) + (f"?{query}" if query else ""), "bc")

    def bc_batch(self, operations: list[dict[str, Any]], api: str = "bc") -> list[dict[str, Any]]:
        """JSON $batch in chunks of 100; ``url`` relative to the company."""
        root = self.bc_root if api == "bc" else self.companion_root
        out = []
        for i in range(0, len(operations), 100):
            chunk = [
                {
                    "id": str(n),
                    "method": op["method"],
                    "url": f"companies({self.company})/{op['url']}",
                    "headers": {"Content-Type": "application/json", **op.get("headers", {})},
                    "body": op.get("body"),
                }
                for n, op in enumerate(operations[i : i + 100])
            ]
            resp = self.http.post(
                root + "$batch", json={"requests": chunk}, headers=self._headers("bc"), timeout=120
            )
            resp.raise_for_status()
            answers = resp.json()["responses"]
            assert all(a["status"] < 300 for a in answers), [a for a in answers if a["status"] >= 300][:2]
            out += answers
        return out

    # -- Dataverse -----------------------------------------------------------------------------------

    def dv_rows(self, entity_set: str, query: str = "") -> list[dict[str, Any]]:
        return self._all(self.dv_root + entity_set + (f"?{query}" if query else ""), "dataverse")

    def dv_create_multiple(self, entity_set: str, logical: str, rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(rows), 1000):
            targets = [{"@odata.type": f"Microsoft.Dynamics.CRM.{logical}", **r} for r in rows[i : i + 1000]]
            resp = self.http.post(
                f"{self.dv_root}{entity_set}/Microsoft.Dynamics.CRM.CreateMultiple",
                json={"Targets": targets},
                headers=self._headers("dataverse"),
                timeout=120,
            )
            resp.raise_for_status()

    def dv_patch(self, entity_set: str, key: str, body: dict[str, Any]) -> None:
        headers = {**self._headers("dataverse"), "If-Match": "*"}
        resp = self.http.patch(f"{self.dv_root}{entity_set}({key})", json=body, headers=headers, timeout=60)
        resp.raise_for_status()

    def dv_delete(self, entity_set: str, key: str) -> None:
        resp = self.http.delete(
            f"{self.dv_root}{entity_set}({key})", headers=self._headers("dataverse"), timeout=60
        )
        resp.raise_for_status()

    # -- sandbox -------------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        url = f"https://{self.info['host']}:{self.info['port']}/_sandbox/stats"
        resp = self.http.get(url, headers={"X-Sandbox-Admin-Key": self.info["admin_key"]}, timeout=30)
        resp.raise_for_status()
        return resp.json()


def new_id() -> str:
    return str(uuid.uuid4())


def eq(name: str, value: str) -> str:
    return f"$filter={quote(name)} eq '{quote(value)}'"
