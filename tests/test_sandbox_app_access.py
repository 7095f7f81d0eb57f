"""Issue #13 (7c): the services check an app token against the application's registration, as the real
ones do (docs/sandbox.md, "Applications and what the services grant them"). A token naming an app the
tenant does not know is refused (401) by both; a registered app that was granted nothing gets BC's 401
"could not be authenticated or authorized" and Dataverse's 403 "not a member of the organization"; the
demo app keeps working. Tokens are forged with the sandbox's own signing key (``identity.issue``)."""

from __future__ import annotations

import uuid

import pytest
import requests
from helpers import token

from d365kit.errors import AuthenticationError
from d365kit.sandbox.context import BC_RESOURCE
from d365kit.sandbox.identity import UNCONSENTED_CLIENT_ID

OTHER_APP = "0f0e0d0c-0b0a-4909-8807-060504030201"  # registered nowhere


def _urls(sandbox) -> dict[str, tuple[str, str]]:
    info = sandbox.info()
    return {
        "bc": (BC_RESOURCE, f"{info['bc_url']}/companies"),
        "dataverse": (info["dataverse_url"], f"{info['dataverse_api_url']}/WhoAmI"),
    }


def _get(sandbox, service: str, bearer: str) -> requests.Response:
    _, url = _urls(sandbox)[service]
    return requests.get(
        url, headers={"Authorization": f"Bearer {bearer}"}, verify=sandbox.info()["ca_bundle"], timeout=30
    )


def _forge(sandbox, service: str, **kwargs) -> str:
    audience, _ = _urls(sandbox)[service]
    return sandbox.ctx.identity.issue(audience, **kwargs)


@pytest.mark.parametrize("service", ["bc", "dataverse"])
def test_a_token_of_an_app_the_tenant_does_not_know_is_refused(sandbox, service):
    r = _get(sandbox, service, _forge(sandbox, service, client_id=OTHER_APP))
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    error = r.json()["error"]
    if service == "bc":
        assert error["code"] == "Authentication_InvalidCredentials"
        assert error["message"].startswith(
            "The server has rejected the client credentials.  CorrelationId:  "
        )
    else:
        assert error["code"] == "0x0" and error["message"].startswith("InvalidAuthTicket: ")
        assert OTHER_APP in error["message"] and "not registered in this tenant" in error["message"]


@pytest.mark.parametrize("service", ["bc", "dataverse"])
def test_a_registered_app_granted_nothing_is_refused(sandbox, service):
    r = _get(sandbox, service, _forge(sandbox, service, client_id=UNCONSENTED_CLIENT_ID))
    error = r.json()["error"]
    if service == "bc":  # BC answers "not authorized" with a 401 of its Authentication_ family
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
        assert error["code"] == "Authentication_InvalidCredentials"
        assert error["message"].startswith(
            "Web service call failed because user could not be authenticated or authorized.  CorrelationId:  "
        )
    else:
        assert r.status_code == 403 and "WWW-Authenticate" not in r.headers
        assert error == {"code": "0x80072560", "message": "The user is not a member of the organization."}


def test_the_demo_app_without_its_bc_roles_is_refused_by_bc(sandbox):
    r = _get(sandbox, "bc", _forge(sandbox, "bc", roles=[]))
    assert r.status_code == 401 and r.json()["error"]["message"].startswith("Web service call failed")
    r = _get(sandbox, "bc", _forge(sandbox, "bc", roles=["Automation.ReadWrite.All"]))
    assert r.status_code == 401
    # Dataverse does not look at roles: the demo app's application user decides
    assert _get(sandbox, "dataverse", _forge(sandbox, "dataverse", roles=[])).status_code == 200


def test_the_demo_app_and_the_demo_user_still_work(sandbox):
    info = sandbox.info()
    assert _get(sandbox, "bc", token(info, info["bc_scope"])).status_code == 200
    assert _get(sandbox, "dataverse", token(info, info["dataverse_scope"])).status_code == 200
    for service in ("bc", "dataverse"):  # forged like the others, but for the demo app: accepted
        assert _get(sandbox, service, _forge(sandbox, service)).status_code == 200
        assert (
            _get(sandbox, service, _forge(sandbox, service, delegated=True, appidacr="0")).status_code == 200
        )


def test_a_user_the_organization_does_not_have_is_refused_by_dataverse(sandbox):
    stranger = _forge(sandbox, "dataverse", delegated=True, oid=str(uuid.uuid4()))
    r = _get(sandbox, "dataverse", stranger)
    assert r.status_code == 403 and r.json()["error"]["code"] == "0x80072560"


def test_the_gate_counts_the_refusals(sandbox):
    info = sandbox.info()
    url = f"https://127.0.0.1:{info['port']}/_sandbox/stats"
    headers = {"X-Sandbox-Admin-Key": info["admin_key"]}

    def read() -> dict:
        return requests.get(url, headers=headers, verify=info["ca_bundle"], timeout=10).json()

    before = read()
    _get(sandbox, "dataverse", _forge(sandbox, "dataverse", client_id=UNCONSENTED_CLIENT_ID))
    _get(sandbox, "bc", _forge(sandbox, "bc", client_id=UNCONSENTED_CLIENT_ID))
    after = read()
    assert after["forbidden"] - before["forbidden"] == 1
    assert after["unauthorized"] - before["unauthorized"] == 1


def test_the_client_reports_the_refusal_as_an_authentication_error(ws, sandbox, monkeypatch):
    forged = _forge(sandbox, "dataverse", client_id=UNCONSENTED_CLIENT_ID)
    monkeypatch.setattr(ws.dataverse.session, "_token", lambda **_: forged)
    with pytest.raises(AuthenticationError) as exc:
        ws.dataverse.to_frame("accounts")
    assert exc.value.status == 403 and exc.value.code == "0x80072560"


# -- the token endpoint: what Entra issues to whom ----------------------------------------------------


def _post_token(info: dict, data: dict) -> requests.Response:
    return requests.post(
        f"{info['authority']}/oauth2/v2.0/token", data=data, verify=info["ca_bundle"], timeout=10
    )


def test_entra_issues_nothing_to_an_unknown_app_or_without_the_apps_own_credential(sandbox):
    info = sandbox.info()
    base = {"grant_type": "client_credentials", "scope": info["bc_scope"]}
    r = _post_token(info, {**base, "client_id": OTHER_APP, "client_secret": info["client_secret"]})
    assert r.status_code == 400 and r.json()["error_codes"] == [700016]
    # the registered app exists, but the demo app's secret is not its secret
    r = _post_token(
        info, {**base, "client_id": UNCONSENTED_CLIENT_ID, "client_secret": info["client_secret"]}
    )
    assert r.status_code == 401 and r.json()["error_codes"] == [7000215]
    # it is a confidential client: no device code sign-in without a credential
    r = requests.post(
        f"{info['authority']}/oauth2/v2.0/devicecode",
        data={"client_id": UNCONSENTED_CLIENT_ID, "scope": f"{BC_RESOURCE}/user_impersonation"},
        verify=info["ca_bundle"],
        timeout=10,
    )
    assert r.status_code == 401 and r.json()["error_codes"] == [7000218]
