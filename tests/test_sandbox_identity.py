"""The sandbox's Entra-like identity over HTTPS: discovery, JWKS, msal client credentials (secret and
certificate), the device code flow, Entra-shaped errors, and ``Identity.verify``."""

from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import approve_device_code, confidential_app, public_app

from d365kit.sandbox.context import BC_RESOURCE, DEMO_USER_OID, DEMO_USER_UPN
from d365kit.sandbox.identity import TokenError


@pytest.fixture(scope="module")
def info(sandbox) -> dict:
    return sandbox.info()


@pytest.fixture(scope="module")
def oidc(info) -> dict:
    r = requests.get(
        f"{info['authority']}/v2.0/.well-known/openid-configuration", verify=info["ca_bundle"], timeout=10
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def jwks(info, oidc) -> dict:
    r = requests.get(oidc["jwks_uri"], verify=info["ca_bundle"], timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def _claims(token: str, jwks: dict, audience: str) -> dict:
    """Verify ``token`` the way a resource server would: signature by the JWKS key named in ``kid``."""
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k).key for k in jwks["keys"] if k["kid"] == kid)
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience)


def _post_token(info: dict, data: dict, **kwargs) -> requests.Response:
    return requests.post(
        f"{info['authority']}/oauth2/v2.0/token", data=data, verify=info["ca_bundle"], timeout=10, **kwargs
    )


def _assert_entra_error(body: dict, error: str, code: int) -> None:
    assert body["error"] == error, body
    assert body["error_codes"] == [code]
    description = body["error_description"]
    assert description.startswith(f"AADSTS{code}: ")
    for part in ("Trace ID: ", "Correlation ID: ", "Timestamp: "):
        assert part in description
    assert body["trace_id"] in description and body["correlation_id"] in description
    assert body["timestamp"] in description


def _cert_credential(info: dict, **extra) -> dict:
    with open(info["client_certificate_key"]) as fh:
        return {"private_key": fh.read(), **extra}


def _assertion(info: dict, *, key_pem: str | None = None, **claims) -> str:
    """A client assertion as msal builds one (RS256, x5t = SHA-1 thumbprint), with claims overridable."""
    now = time.time()
    payload = {
        "aud": f"{info['authority']}/oauth2/v2.0/token",
        "iss": info["client_id"],
        "sub": info["client_id"],
        "exp": now + 600,
        "iat": now,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    x5t = base64.urlsafe_b64encode(bytes.fromhex(info["client_certificate_thumbprint"])).decode()
    key = key_pem or _cert_credential(info)["private_key"]
    return jwt.encode(payload, key, algorithm="RS256", headers={"x5t": x5t})


# -- discovery and keys ----------------------------------------------------------------------------


def test_discovery_names_the_endpoints_under_the_authority(info, oidc):
    a = info["authority"]
    assert oidc["issuer"] == f"{a}/v2.0"
    assert oidc["token_endpoint"] == f"{a}/oauth2/v2.0/token"
    assert oidc["device_authorization_endpoint"] == f"{a}/oauth2/v2.0/devicecode"
    assert oidc["authorization_endpoint"] == f"{a}/oauth2/v2.0/authorize"
    assert oidc["jwks_uri"] == f"{a}/discovery/v2.0/keys"
    assert {"client_secret_post", "private_key_jwt"} <= set(oidc["token_endpoint_auth_methods_supported"])
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]


def test_unknown_tenant_is_aadsts90002(info):
    origin = f"https://127.0.0.1:{info['port']}"
    for tenant in ("common", str(uuid.uuid4())):
        r = requests.get(
            f"{origin}/{tenant}/v2.0/.well-known/openid-configuration", verify=info["ca_bundle"], timeout=10
        )
        assert r.status_code == 400
        _assert_entra_error(r.json(), "invalid_tenant", 90002)
        assert f"Tenant '{tenant}' not found" in r.json()["error_description"]
    r = requests.post(
        f"{origin}/common/oauth2/v2.0/token",
        data={"grant_type": "client_credentials"},
        verify=info["ca_bundle"],
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error_codes"] == [90002]


def test_msal_refuses_an_authority_with_an_unknown_tenant(info):
    origin = f"https://127.0.0.1:{info['port']}"
    with pytest.raises(ValueError, match="tenant name or GUID is correct"):
        confidential_app({**info, "authority": f"{origin}/{uuid.uuid4()}"})


def test_jwks_serves_the_signing_key(jwks, sandbox):
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["kid"] == sandbox.ctx.identity.kid


# -- client credentials ----------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["bc", "dataverse"])
def test_msal_secret_gets_app_tokens(info, jwks, which):
    scope, audience = (
        (info["bc_scope"], BC_RESOURCE) if which == "bc" else (info["dataverse_scope"], info["dataverse_url"])
    )
    result = confidential_app(info).acquire_token_for_client(scopes=[scope])
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599, result
    claims = _claims(result["access_token"], jwks, audience)
    assert claims["iss"] == f"{info['authority']}/"
    assert claims["tid"] == info["tenant_id"] and claims["appid"] == info["client_id"]
    assert claims["appidacr"] == "1" and claims["idtyp"] == "app" and claims["ver"] == "1.0"
    assert claims["oid"] == claims["sub"] and claims["exp"] - claims["iat"] == 3600
    assert "scp" not in claims
    if which == "bc":
        assert claims["roles"] == ["API.ReadWrite.All", "Automation.ReadWrite.All"]
    else:
        assert "roles" not in claims


def test_msal_certificate_by_thumbprint_gets_tokens(info, jwks):
    credential = _cert_credential(info, thumbprint=info["client_certificate_thumbprint"])
    app = confidential_app(info, credential)
    for scope, audience in (
        (info["bc_scope"], BC_RESOURCE),
        (info["dataverse_scope"], info["dataverse_url"]),
    ):
        result = app.acquire_token_for_client(scopes=[scope])
        assert "access_token" in result, result
        assert _claims(result["access_token"], jwks, audience)["appidacr"] == "2"


def test_msal_certificate_with_public_certificate_uses_ps256_and_sha256_thumbprint(info, jwks):
    with open(info["client_certificate"]) as fh:
        credential = _cert_credential(info, public_certificate=fh.read())
    result = confidential_app(info, credential).acquire_token_for_client(scopes=[info["bc_scope"]])
    assert _claims(result["access_token"], jwks, BC_RESOURCE)["appidacr"] == "2", result


def test_secret_in_http_basic(info, jwks):
    r = _post_token(
        info,
        {"grant_type": "client_credentials", "scope": info["bc_scope"]},
        auth=(info["client_id"], info["client_secret"]),
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"].startswith("no-store")
    assert _claims(r.json()["access_token"], jwks, BC_RESOURCE)["appidacr"] == "1"


def test_wrong_secret_is_aadsts7000215_and_never_echoed(info):
    wrong = "not-the-secret-" + uuid.uuid4().hex
    result = confidential_app(info, wrong).acquire_token_for_client(scopes=[info["bc_scope"]])
    _assert_entra_error(result, "invalid_client", 7000215)
    assert wrong not in str(result)
    correlation = str(uuid.uuid4())
    r = _post_token(
        info,
        {
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": wrong,
            "scope": info["bc_scope"],
        },
        headers={"client-request-id": correlation},
    )
    assert r.status_code == 401 and wrong not in r.text
    _assert_entra_error(r.json(), "invalid_client", 7000215)
    assert r.json()["correlation_id"] == correlation


@pytest.mark.parametrize(
    ("data", "status", "error", "code"),
    [
        (
            {"client_id": "00000000-0000-0000-0000-000000000001", "client_secret": "x"},
            400,
            "unauthorized_client",
            700016,
        ),
        ({}, 401, "invalid_client", 7000218),
        (
            {
                "client_secret": "SECRET",
                "scope": "https://api.businesscentral.dynamics.com/API.ReadWrite.All",
            },
            400,
            "invalid_scope",
            1002012,
        ),
        (
            {"client_secret": "SECRET", "scope": "https://graph.microsoft.com/.default"},
            400,
            "invalid_resource",
            500011,
        ),
        (
            {
                "client_secret": "SECRET",
                "scope": "DATAVERSE https://api.businesscentral.dynamics.com/.default",
            },
            400,
            "invalid_scope",
            28000,
        ),
        ({"client_secret": "SECRET", "scope": ""}, 400, "invalid_scope", 70011),
    ],
)
def test_client_credentials_errors(info, data, status, error, code):
    form = {"grant_type": "client_credentials", "client_id": info["client_id"], "scope": info["bc_scope"]}
    for k, v in data.items():
        form[k] = v.replace("SECRET", info["client_secret"]).replace("DATAVERSE", info["dataverse_scope"])
    r = _post_token(info, form)
    assert r.status_code == status, r.text
    _assert_entra_error(r.json(), error, code)
    assert info["client_secret"] not in r.text


def test_unknown_resource_through_msal(info):
    result = confidential_app(info).acquire_token_for_client(
        scopes=["https://contoso.crm.dynamics.com/.default"]
    )
    _assert_entra_error(result, "invalid_resource", 500011)


def _assertion_form(info: dict, assertion: str) -> dict:
    return {
        "grant_type": "client_credentials",
        "client_id": info["client_id"],
        "scope": info["bc_scope"],
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }


def test_hand_made_assertion_is_accepted(info, jwks):
    r = _post_token(info, _assertion_form(info, _assertion(info)))
    assert r.status_code == 200, r.text


def _foreign_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda info: _assertion(info, key_pem=_foreign_key_pem()), 700027),  # right thumbprint, wrong key
        (lambda info: _assertion(info, aud="https://login.microsoftonline.com/x/oauth2/v2.0/token"), 700023),
        (lambda info: _assertion(info, exp=time.time() - 600, iat=time.time() - 1200), 700024),
        (lambda info: _assertion(info, iss="someone-else", sub="someone-else"), 700021),
    ],
)
def test_bad_assertions_are_refused(info, make, code):
    assertion = make(info)
    r = _post_token(info, _assertion_form(info, assertion))
    assert r.status_code == 401, r.text
    _assert_entra_error(r.json(), "invalid_client", code)
    assert assertion not in r.text


def test_unknown_thumbprint_is_refused(info):
    token = jwt.encode(
        {
            "aud": f"{info['authority']}/oauth2/v2.0/token",
            "iss": info["client_id"],
            "sub": info["client_id"],
            "exp": time.time() + 600,
        },
        _foreign_key_pem(),
        algorithm="RS256",
        headers={"x5t": base64.urlsafe_b64encode(b"\x01" * 20).decode()},
    )
    r = _post_token(info, _assertion_form(info, token))
    assert r.status_code == 401 and r.json()["error_codes"] == [700027]


# -- not implemented and method errors ---------------------------------------------------------------


def test_unimplemented_endpoints_and_grants_answer_501(info):
    r = requests.get(
        f"{info['authority']}/oauth2/v2.0/authorize?client_id=x", verify=info["ca_bundle"], timeout=10
    )
    assert r.status_code == 501
    _assert_entra_error(r.json(), "not_implemented", 501)
    assert "/oauth2/v2.0/authorize" in r.json()["error_description"]
    r = _post_token(info, {"grant_type": "authorization_code", "client_id": info["client_id"], "code": "x"})
    assert r.status_code == 501 and "authorization_code" in r.json()["error_description"]
    r = _post_token(info, {"grant_type": "nonsense", "client_id": info["client_id"]})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = requests.get(f"{info['authority']}/oauth2/v2.0/token", verify=info["ca_bundle"], timeout=10)
    assert r.status_code == 400 and r.json()["error_codes"] == [900561]


# -- device code flow --------------------------------------------------------------------------------


_approve = approve_device_code  # the user signs in on the verification page (tests/helpers.py)


def test_device_code_flow_with_msal(info, jwks):
    app = public_app(info)
    flow = app.initiate_device_flow(scopes=[info["bc_scope"]])
    assert flow["verification_uri"] == f"{info['authority']}/oauth2/deviceauth"
    assert flow["user_code"] in flow["message"] and flow["verification_uri"] in flow["message"]
    assert flow["expires_in"] == 900 and flow["interval"] == 5

    pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda flow: True)
    _assert_entra_error(pending, "authorization_pending", 70016)

    page = requests.get(flow["verification_uri"], verify=info["ca_bundle"], timeout=10)
    assert page.status_code == 200 and 'name="user_code"' in page.text
    approved = _approve(info, flow["user_code"].lower())
    assert approved.status_code == 200 and DEMO_USER_UPN in approved.text

    flow["latest_attempt_at"] = 0  # the flow dict is ours to steer (msal documents it); no interval wait
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    claims = _claims(result["access_token"], jwks, BC_RESOURCE)
    assert claims["oid"] == DEMO_USER_OID and claims["upn"] == DEMO_USER_UPN and claims["idtyp"] == "user"
    assert claims["scp"] == "Financials.ReadWrite.All user_impersonation" and claims["appidacr"] == "0"
    assert "roles" not in claims
    (account,) = app.get_accounts()
    assert account["username"] == DEMO_USER_UPN

    # the refresh token reaches the other resource without another sign-in
    dv = app.acquire_token_silent([info["dataverse_scope"]], account=account)
    assert dv and "access_token" in dv, dv
    dv_claims = _claims(dv["access_token"], jwks, info["dataverse_url"])
    assert dv_claims["scp"] == "user_impersonation" and dv_claims["oid"] == DEMO_USER_OID

    # a device code is redeemed once
    r = _post_token(
        info,
        {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": info["client_id"],
            "device_code": flow["device_code"],
        },
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_device_code_expires(info, sandbox, monkeypatch):
    monkeypatch.setattr(sandbox.ctx.identity, "device_code_lifetime_s", -1)
    app = public_app(info)
    flow = app.initiate_device_flow(scopes=[info["dataverse_scope"]])
    assert _approve(info, flow["user_code"]).status_code == 400
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda flow: True)
    _assert_entra_error(result, "expired_token", 70020)


def test_device_code_errors(info):
    assert _approve(info, "NOTACODE1").status_code == 400
    r = requests.post(
        f"{info['authority']}/oauth2/v2.0/devicecode",
        data={"client_id": info["client_id"], "scope": "openid profile https://graph.microsoft.com/.default"},
        verify=info["ca_bundle"],
        timeout=10,
    )
    assert r.status_code == 400
    _assert_entra_error(r.json(), "invalid_resource", 500011)


# -- verify() ----------------------------------------------------------------------------------------


def test_verify_accepts_issued_tokens(info, sandbox):
    identity = sandbox.ctx.identity
    claims = identity.verify(identity.issue(BC_RESOURCE), BC_RESOURCE)
    assert claims["aud"] == BC_RESOURCE and claims["tid"] == info["tenant_id"]
    msal_token = confidential_app(info).acquire_token_for_client(scopes=[info["dataverse_scope"]])[
        "access_token"
    ]
    assert identity.verify(msal_token, info["dataverse_url"])["appid"] == info["client_id"]


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["roles"] = [*claims.get("roles", []), "Admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda ident: ident.issue(BC_RESOURCE, lifetime_s=-120), "expired"),
        (lambda ident: ident.issue(BC_RESOURCE, now=time.time() + 600), "not_yet_valid"),
        (lambda ident: _tampered(ident.issue(BC_RESOURCE)), "signature"),
        (lambda ident: ident.issue("https://contoso.crm.dynamics.com"), "audience"),
        (lambda ident: ident.issue(BC_RESOURCE, tid=str(uuid.uuid4())), "issuer"),
        (lambda ident: ident.issue(BC_RESOURCE, iss="https://sts.windows.net/x/"), "issuer"),
        (lambda ident: "not.a.jwt", "malformed"),
        (
            lambda ident: jwt.encode(
                {"aud": BC_RESOURCE, "exp": time.time() + 60},
                _foreign_key_pem(),
                algorithm="RS256",
                headers={"kid": ident.kid},
            ),
            "signature",
        ),
    ],
)
def test_verify_rejects(sandbox, make, kind):
    identity = sandbox.ctx.identity
    with pytest.raises(TokenError) as exc:
        identity.verify(make(identity), BC_RESOURCE)
    assert exc.value.kind == kind and str(exc.value)


def test_verify_rejects_a_bc_token_for_dataverse(info, sandbox):
    bc_token = confidential_app(info).acquire_token_for_client(scopes=[info["bc_scope"]])["access_token"]
    with pytest.raises(TokenError, match="audience"):
        sandbox.ctx.identity.verify(bc_token, info["dataverse_url"])
