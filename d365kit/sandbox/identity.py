"""Entra-like identity of the sandbox tenant: OIDC discovery, token endpoint, device code flow, JWKS.

msal's ``ConfidentialClientApplication`` / ``PublicClientApplication`` with
``authority="https://127.0.0.1:PORT/<tenant id>", instance_discovery=False`` work unchanged: msal reads
``{authority}/v2.0/.well-known/openid-configuration`` and uses its ``token_endpoint`` and
``device_authorization_endpoint``; the tenant is taken from the token endpoint's first path segment.

Only the sandbox tenant id is a tenant here: ``common``, ``organizations``, domain names and other ids get
AADSTS90002. Supported grants: ``client_credentials`` (secret in the body or HTTP Basic, or a certificate
``client_assertion``), ``device_code`` and ``refresh_token``. Other Entra endpoints and grants answer 501.
Wire shapes (error bodies, discovery document, sign-in page) live in ``entra_wire``.

Choices on UNVERIFIED points (docs/sandbox.md#choices-on-unverified-wire-facts, "Identity"):
- Access tokens are v1.0-style (``ver`` "1.0", ``appid``/``appidacr``), as first-party resources get them;
  ``iss`` is ``{origin}/{tenant}/`` — the local stand-in for ``https://sts.windows.net/{tenant}/``.
  ``aud`` is the resource URI as requested (``BC_RESOURCE`` or ``ctx.dataverse_url``).
- App tokens for BC carry ``roles`` API.ReadWrite.All and Automation.ReadWrite.All; Dataverse app tokens
  carry no ``roles`` (Dataverse authorizes the application user by its security roles, not by Entra
  permissions).
- Delegated (device code) tokens carry every delegated permission of the resource in ``scp``:
  BC "Financials.ReadWrite.All user_impersonation", Dataverse "user_impersonation"; the token response's
  ``scope`` lists them as full URIs. ``appidacr`` is "0" for a public client.
- Error codes: AADSTS90002 bad tenant, 700016 unknown client, 7000215 wrong secret (401), 7000218 no
  credential (401), 1002012 client credentials without ``/.default``, 28000 more than one resource,
  70011 other bad scopes, 500011 unknown resource, 700027 / 700024 / 700023 / 700021 / 50027 assertion
  failures, 70016 authorization_pending, 70020 expired_token, 9002313 unknown device code or refresh
  token, 70003 unsupported grant, 900561 non-POST to a POST endpoint. Not-implemented endpoints answer
  501 with error ``not_implemented`` and code 501 (a sandbox invention; Entra has no such code).
- Order of checks at the token endpoint: tenant, grant type, client id, client credential, scope (so a
  caller learns nothing about resources before authenticating).

Applications (docs/sandbox.md, "Applications and what the services grant them"): the tenant has two app
registrations, ``applications``: the demo app (``ctx.client_id``: the sandbox's secret and certificate, public
client flows allowed, BC application permissions with admin consent, on BC's "Microsoft Entra Applications"
page) and ``UNCONSENTED_CLIENT_ID``, an app registered in the tenant that nothing was granted to (no
credential the sandbox hands out, no BC permission, no Dataverse application user). A client id outside the
registry gets AADSTS700016 at the token endpoint, and ``verify`` refuses a token that names one (kind
"application"): this tenant issues none. What each service grants is checked by the gate (``faults.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from d365kit.sandbox.context import BC_RESOURCE, DEMO_USER_OID, DEMO_USER_UPN, SandboxContext
from d365kit.sandbox.entra_wire import (
    EntraError,
    b64url,
    b64url_thumbprint,
    basic_credentials,
    code_form,
    correlation_of,
    error_response,
    html_page,
    invalid_grant,
    json_response,
    missing_parameter,
    openid_configuration,
    read_form,
    require_post,
    timestamp,
)
from d365kit.sandbox.keys import KeyMaterial

APP_OBJECT_ID = "3c9d7e21-5a4b-4f6e-8d2c-1b0a9f8e7d6c"  # the demo app's service principal in the tenant
UNCONSENTED_CLIENT_ID = "6b2f8d4e-1c3a-4e5b-9f7d-2a4c6e8b0d1f"  # registered in the tenant, granted nothing
UNCONSENTED_OBJECT_ID = "7e1d3c5b-9a8f-4b6d-8e2c-4f6a8b0c2d3e"
DEMO_USER_NAME = "Sandbox Analyst"
BC_APP_ROLES = ("API.ReadWrite.All", "Automation.ReadWrite.All")
BC_DELEGATED = ("Financials.ReadWrite.All", "user_impersonation")
DATAVERSE_DELEGATED = ("user_impersonation",)
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})

TOKEN_LIFETIME_S = 3600
EXPIRES_IN_S = 3599  # what Entra reports for a one-hour token
VERIFY_LEEWAY_S = 30
ASSERTION_LEEWAY_S = 60
DEVICE_CODE_LIFETIME_S = 900
DEVICE_POLL_INTERVAL_S = 5
REFRESH_LIFETIME_S = 90 * 24 * 3600

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_REFRESH = "refresh_token"
NOT_IMPLEMENTED_GRANTS = frozenset(
    {
        "authorization_code",
        "password",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:saml1_1-bearer",
        "urn:ietf:params:oauth:grant-type:saml2-bearer",
    }
)
ASSERTION_TYPE_JWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TokenError(Exception):
    """An access token that does not verify; ``str(exc)`` is the reason, ``kind`` its category.

    kind: "malformed", "signature", "expired", "not_yet_valid", "audience", "issuer", "application".
    """

    def __init__(self, reason: str, kind: str = "invalid"):
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class Application:
    """An app registration of the sandbox tenant (its service principal) and what BC grants it.

    ``bc_roles``: BC application permissions with admin consent (the ``roles`` of its BC app tokens);
    ``bc_entra_app``: listed on BC's "Microsoft Entra Applications" page with permission sets (BC refuses
    app tokens of any other app). Dataverse decides from its own data: an application user (``systemusers``
    row with this ``applicationid``). ``public_client``: "Allow public client flows" (device code without a
    credential). ``credential``: the sandbox's client secret and certificate belong to this app.
    """

    client_id: str
    name: str
    object_id: str
    public_client: bool = False
    bc_roles: tuple[str, ...] = ()
    bc_entra_app: bool = False
    credential: bool = False


@dataclass
class DeviceGrant:
    """One device-code sign-in, pending until the user code is entered on the verification page."""

    user_code: str
    client_id: str
    resource: str
    expires_at: float
    approved: bool = False
    polls: int = 0  # token requests answered authorization_pending


@dataclass
class RefreshGrant:
    """What an (opaque) refresh token stands for: the demo user signed in to one client."""

    client_id: str
    expires_at: float


class Identity:
    """The sandbox tenant's identity provider: issues and verifies RS256 access tokens."""

    def __init__(self, ctx: SandboxContext, km: KeyMaterial):
        self.ctx, self.km = ctx, km
        self._signing_key = serialization.load_pem_private_key(km.signing_key_pem(), password=None)
        self._public_key = self._signing_key.public_key()
        spki = self._public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = b64url(hashlib.sha1(spki).digest())  # noqa: S324 - a key id, like Entra's x5t
        cert = x509.load_pem_x509_certificate(km.client_cert_pem())
        self._client_cert_key = cert.public_key()
        self._client_x5t = b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S324 - the protocol's choice
        self._client_x5t_s256 = b64url(cert.fingerprint(hashes.SHA256()))
        self.device_code_lifetime_s = DEVICE_CODE_LIFETIME_S  # tests shorten it to see expired_token
        self.device_poll_interval_s = DEVICE_POLL_INTERVAL_S  # tests shorten it to poll without waiting
        self.applications: dict[str, Application] = {
            app.client_id.lower(): app
            for app in (
                Application(
                    ctx.client_id,
                    "d365kit sandbox app",
                    APP_OBJECT_ID,
                    public_client=True,
                    bc_roles=BC_APP_ROLES,
                    bc_entra_app=True,
                    credential=True,
                ),
                Application(UNCONSENTED_CLIENT_ID, "Unconsented app", UNCONSENTED_OBJECT_ID),
            )
        }
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceGrant] = {}  # device_code -> grant
        self._refresh: dict[str, RefreshGrant] = {}

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The ``iss`` of access tokens (v1 style: authority with a trailing slash)."""
        return f"{self.ctx.authority}/"

    @property
    def token_endpoint(self) -> str:
        return f"{self.ctx.authority}/oauth2/v2.0/token"

    @property
    def verification_uri(self) -> str:
        return f"{self.ctx.authority}/oauth2/deviceauth"

    def openid_configuration(self) -> dict[str, Any]:
        return openid_configuration(self.ctx.authority)

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._public_key, as_dict=True)
        return {
            "keys": [
                {"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": jwk["n"], "e": jwk["e"]}
            ]
        }

    def application(self, client_id: str | None) -> Application | None:
        """The tenant's app registration with this client id, or None (not registered here)."""
        return self.applications.get(str(client_id or "").lower())

    # -- tokens ------------------------------------------------------------------------------------

    def issue(
        self,
        audience: str,
        *,
        lifetime_s: int = TOKEN_LIFETIME_S,
        delegated: bool = False,
        appidacr: str = "1",
        client_id: str | None = None,
        now: float | None = None,
        **overrides: Any,
    ) -> str:
        """A signed access token for ``audience`` (also the hook tests use to forge tokens).

        App tokens get the ``oid`` and BC ``roles`` of ``client_id``'s registration (none for an app the
        tenant does not know: a forgery). ``overrides`` replace claims as given (e.g. ``tid=...`` for a
        foreign-tenant token, ``roles=[]``).
        """
        now = time.time() if now is None else now
        client_id = client_id or self.ctx.client_id
        resource = audience.rstrip("/")
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + lifetime_s),
            "appid": client_id,
            "appidacr": appidacr,
            "idp": self.issuer,
            "tid": self.ctx.tenant_id,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        if delegated:
            claims.update(
                acr="1",
                amr=["pwd"],
                name=DEMO_USER_NAME,
                oid=DEMO_USER_OID,
                scp=" ".join(self._delegated_permissions(resource)),
                sub=self._pairwise_sub(client_id),
                unique_name=DEMO_USER_UPN,
                upn=DEMO_USER_UPN,
                idtyp="user",
            )
            del claims["idp"]
        else:
            app = self.application(client_id)
            oid = app.object_id if app else str(uuid.uuid5(uuid.NAMESPACE_URL, f"app:{client_id}"))
            claims.update(oid=oid, sub=oid, idtyp="app")
            if resource == BC_RESOURCE and app and app.bc_roles:  # Entra omits an empty roles claim
                claims["roles"] = list(app.bc_roles)
        claims.update(overrides)
        return jwt.encode(
            claims, self._signing_key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid}
        )

    def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of an access token this tenant issued for ``audience``; else ``TokenError``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenError("The access token is malformed (not a JWS).", "malformed") from None
        if header.get("alg") != "RS256":
            raise TokenError(
                f"The access token's signing algorithm {header.get('alg')!r} is not RS256.", "signature"
            )
        if header.get("kid") != self.kid:
            raise TokenError("The access token was not signed by a key of this tenant.", "signature")
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                leeway=VERIFY_LEEWAY_S,
                options={"require": ["exp", "nbf", "iat", "aud", "iss", "tid"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("The access token is expired.", "expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("The access token is not yet valid.", "not_yet_valid") from None
        except jwt.InvalidSignatureError:
            raise TokenError("The access token's signature is invalid.", "signature") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"The access token is malformed: {exc}.", "malformed") from None
        if str(claims["aud"]).rstrip("/") != audience.rstrip("/"):
            raise TokenError(
                f"The access token's audience {claims['aud']!r} is not {audience!r}.", "audience"
            )
        if claims["iss"] != self.issuer or claims["tid"] != self.ctx.tenant_id:
            raise TokenError(f"The access token's issuer {claims['iss']!r} is not this tenant.", "issuer")
        if self.application(claims.get("appid") or claims.get("azp")) is None:
            raise TokenError(
                f"The access token's application {claims.get('appid') or claims.get('azp')!r} is not "
                "registered in this tenant.",
                "application",
            )
        return claims

    def _id_token(self, client_id: str, now: float) -> str:
        """A v2 ID token for the demo user (msal builds its account from it and ``client_info``)."""
        claims = {
            "aud": client_id,
            "iss": f"{self.ctx.authority}/v2.0",
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + TOKEN_LIFETIME_S),
            "name": DEMO_USER_NAME,
            "oid": DEMO_USER_OID,
            "preferred_username": DEMO_USER_UPN,
            "sub": self._pairwise_sub(client_id),
            "tid": self.ctx.tenant_id,
            "ver": "2.0",
        }
        return jwt.encode(claims, self._signing_key, algorithm="RS256", headers={"kid": self.kid})

    def _pairwise_sub(self, client_id: str) -> str:
        return b64url(hashlib.sha256(f"{DEMO_USER_OID}|{client_id}".encode()).digest())

    def _delegated_permissions(self, resource: str) -> tuple[str, ...]:
        return BC_DELEGATED if resource == BC_RESOURCE else DATAVERSE_DELEGATED

    # -- routes ------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        t = "/{tenant}"
        every = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return [
            Route(f"{t}/v2.0/.well-known/openid-configuration", self._discovery, methods=["GET"]),
            Route(f"{t}/discovery/v2.0/keys", self._keys, methods=["GET"]),
            Route(f"{t}/discovery/keys", self._keys, methods=["GET"]),
            Route(f"{t}/oauth2/v2.0/token", self._token, methods=every),
            Route(f"{t}/oauth2/v2.0/devicecode", self._devicecode, methods=every),
            Route(f"{t}/oauth2/deviceauth", self._deviceauth, methods=["GET", "POST"]),
            Route(f"{t}/oauth2/{{rest:path}}", self._not_implemented, methods=every),
            Route(f"{t}/discovery/{{rest:path}}", self._not_implemented, methods=every),
            Route(f"{t}/v2.0/{{rest:path}}", self._not_implemented, methods=every),
            Route(f"{t}/.well-known/{{rest:path}}", self._not_implemented, methods=every),
        ]

    def _check_tenant(self, request: Request) -> None:
        tenant = request.path_params["tenant"]
        if tenant.lower() != self.ctx.tenant_id.lower():
            raise EntraError(
                400,
                "invalid_tenant" if request.method == "GET" else "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud. Check with your subscription administrator, this may happen if there "
                "are no active subscriptions for the tenant.",
            )

    async def _guarded(self, request: Request, handler: Any) -> Response:
        """Run ``handler`` after the tenant check; Entra errors become Entra error bodies."""
        correlation = correlation_of(request)
        try:
            self._check_tenant(request)
            return await handler(request, correlation)
        except EntraError as err:
            return error_response(err, correlation)

    async def _discovery(self, request: Request) -> Response:
        async def answer(request: Request, correlation: str) -> Response:
            return json_response(
                self.openid_configuration(), 200, correlation, {"cache-control": "max-age=86400, private"}
            )

        return await self._guarded(request, answer)

    async def _keys(self, request: Request) -> Response:
        async def answer(request: Request, correlation: str) -> Response:
            return json_response(self.jwks(), 200, correlation, {"cache-control": "max-age=86400, private"})

        return await self._guarded(request, answer)

    async def _not_implemented(self, request: Request) -> Response:
        async def answer(request: Request, correlation: str) -> Response:
            raise EntraError(
                501,
                "not_implemented",
                501,
                f"The d365kit sandbox does not implement {request.method} {request.url.path}. It implements OIDC "
                "discovery, the JWKS, the v2.0 token endpoint (client_credentials, device_code, refresh_token) "
                "and the device code flow.",
            )

        return await self._guarded(request, answer)

    # -- token endpoint ----------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        return await self._guarded(request, self._answer_token)

    async def _answer_token(self, request: Request, correlation: str) -> Response:
        require_post(request)
        form = await read_form(request)
        grant = form.get("grant_type")
        if not grant:
            raise missing_parameter("grant_type")
        if grant in NOT_IMPLEMENTED_GRANTS:
            raise EntraError(
                501, "not_implemented", 501, f"The d365kit sandbox does not implement grant_type '{grant}'."
            )
        if grant not in (GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH):
            raise EntraError(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id, acr = self._authenticate_client(request, form, required=grant == GRANT_CLIENT_CREDENTIALS)
        if grant == GRANT_CLIENT_CREDENTIALS:
            resource = self._app_resource(form.get("scope", ""))
            token = self.issue(resource, appidacr=acr, client_id=client_id)
            body = {
                "token_type": "Bearer",
                "expires_in": EXPIRES_IN_S,
                "ext_expires_in": EXPIRES_IN_S,
                "access_token": token,
            }
            return json_response(body, 200, correlation)
        if grant == GRANT_DEVICE_CODE:
            resource = self._redeem_device_code(form, client_id)
        else:
            resource = self._redeem_refresh_token(form, client_id)
        return json_response(self._user_tokens(resource, client_id, acr), 200, correlation)

    def _authenticate_client(
        self, request: Request, form: dict[str, str], *, required: bool
    ) -> tuple[str, str]:
        """(client id, appidacr): "1" secret, "2" certificate, "0" public client (only when not ``required``)."""
        basic_id, basic_secret = basic_credentials(request)
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise missing_parameter("client_id")
        app = self.application(client_id)
        if app is None or (basic_id and basic_id != client_id):
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.ctx.tenant_id}'. "
                "This can happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You may have sent your authentication request to the "
                "wrong tenant.",
            )
        secrets_sent = [s for s in (form.get("client_secret"), basic_secret) if s]
        assertion = form.get("client_assertion")
        if secrets_sent and assertion:
            raise EntraError(
                400, "invalid_request", 90014, "Only one client credential (secret or assertion) may be sent."
            )
        if secrets_sent:
            if not app.credential or not all(
                hmac.compare_digest(s.encode(), self.ctx.client_secret.encode()) for s in secrets_sent
            ):
                raise EntraError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                    f"secret value, not the client secret ID, for a secret added to app '{client_id}'.",
                )
            return client_id, "1"
        if assertion:
            if form.get("client_assertion_type") != ASSERTION_TYPE_JWT:
                raise EntraError(
                    400, "invalid_request", 70002, f"client_assertion_type must be '{ASSERTION_TYPE_JWT}'."
                )
            self._check_assertion(assertion, client_id, app)
            return client_id, "2"
        if required or not app.public_client:  # a confidential app must authenticate, whatever the grant
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        return client_id, "0"

    def _check_assertion(self, assertion: str, client_id: str, app: Application) -> None:
        """A client assertion must be signed by the registered certificate (x5t or x5t#S256), for us."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError:
            raise EntraError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
        alg = header.get("alg")
        if alg not in ("RS256", "PS256"):
            raise EntraError(
                401,
                "invalid_client",
                5002738,
                f"Invalid JWT token. '{alg}' is not a supported signature algorithm.",
            )
        sha1, sha256 = b64url_thumbprint(header.get("x5t")), b64url_thumbprint(header.get("x5t#S256"))
        if not app.credential or not (
            (sha1 and hmac.compare_digest(sha1, self._client_x5t))
            or (sha256 and hmac.compare_digest(sha256, self._client_x5t_s256))
        ):
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of "
                f"key used by client: '{sha1 or sha256 or 'none'}', Please visit the Azure Portal to see "
                f"configured keys for app Id '{client_id}'.]",
            )
        try:
            claims = jwt.decode(
                assertion,
                self._client_cert_key,
                algorithms=[alg],
                leeway=ASSERTION_LEEWAY_S,
                options={"require": ["exp", "aud", "iss", "sub"], "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                "Client assertion contains an invalid signature. [Reason - The provided signature value did not "
                "match the expected signature value.]",
            ) from None
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise EntraError(
                401,
                "invalid_client",
                700024,
                f"Client assertion is not within its valid time range. Current time: {timestamp()}.",
            ) from None
        except jwt.InvalidTokenError:
            raise EntraError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
        if claims["aud"] != self.token_endpoint:
            raise EntraError(
                401, "invalid_client", 700023, "Client assertion audience claim does not match Realm issuer."
            )
        if claims["iss"] != client_id or claims["sub"] != client_id:
            raise EntraError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )

    # -- scopes ------------------------------------------------------------------------------------

    def _resources(self) -> dict[str, str]:
        """Known resource URIs (compared without a trailing slash) -> their canonical form."""
        return {
            BC_RESOURCE.rstrip("/"): BC_RESOURCE,
            self.ctx.dataverse_url.rstrip("/"): self.ctx.dataverse_url,
        }

    def _resource_of(self, scopes: list[str], *, app: bool) -> str:
        """The one resource that ``scopes`` (OIDC scopes removed) address; Entra's errors otherwise."""
        if not scopes:
            raise EntraError(
                400, "invalid_scope", 70011, "The provided request must include a 'scope' input parameter."
            )
        resources: dict[str, str] = {}
        for scope in scopes:
            uri, _, permission = scope.rpartition("/")
            if app and permission != ".default":
                raise EntraError(
                    400,
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                    "value with /.default suffixed to the resource identifier (application ID URI).",
                )
            if not uri:
                raise EntraError(
                    400,
                    "invalid_scope",
                    70011,
                    f"The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
                )
            resources[uri.rstrip("/")] = permission
        if len(resources) > 1:
            raise EntraError(
                400,
                "invalid_scope",
                28000,
                "Provided value for the input parameter scope is not valid because it contains more than one "
                f"resource. Scope {' '.join(scopes)} is not valid.",
            )
        (uri, permission), known = next(iter(resources.items())), self._resources()
        if uri not in known:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {uri} was not found in the tenant named {self.ctx.tenant_id}. This "
                "can happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant. You might have sent your authentication request to the "
                "wrong tenant.",
            )
        resource = known[uri]
        if not app and permission != ".default" and permission not in self._delegated_permissions(resource):
            raise EntraError(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid. The scope {uri}/{permission} is not valid.",
            )
        return resource

    def _app_resource(self, scope: str) -> str:
        return self._resource_of(scope.split(), app=True)

    def _user_resource(self, scope: str) -> str:
        return self._resource_of([s for s in scope.split() if s not in OIDC_SCOPES], app=False)

    # -- device code flow --------------------------------------------------------------------------

    async def _devicecode(self, request: Request) -> Response:
        return await self._guarded(request, self._answer_devicecode)

    async def _answer_devicecode(self, request: Request, correlation: str) -> Response:
        require_post(request)
        form = await read_form(request)
        client_id, _ = self._authenticate_client(request, form, required=False)
        resource = self._user_resource(form.get("scope", ""))
        now = time.time()
        device_code = secrets.token_urlsafe(48)
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        with self._lock:
            self._forget_stale(now)
            self._devices[device_code] = DeviceGrant(
                user_code, client_id, resource, now + self.device_code_lifetime_s
            )
        body = {
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": self.verification_uri,
            "expires_in": self.device_code_lifetime_s,
            "interval": self.device_poll_interval_s,
            "message": f"To sign in, use a web browser to open the page {self.verification_uri} and enter the code "
            f"{user_code} to authenticate.",
        }
        return json_response(body, 200, correlation)

    def _forget_stale(self, now: float) -> None:
        """Drop device grants long expired (kept a while so polling clients still see expired_token)."""
        for code in [c for c, g in self._devices.items() if g.expires_at + DEVICE_CODE_LIFETIME_S < now]:
            del self._devices[code]

    def approve_user_code(self, user_code: str) -> str | None:
        """Sign the demo user in for ``user_code``; None when done, else why not (shown to the user)."""
        wanted = user_code.strip().upper().replace("-", "").replace(" ", "")
        with self._lock:
            grant = next((g for g in self._devices.values() if g.user_code == wanted), None)
            if grant is None:
                return "That code didn't work. Check the code and try again."
            if grant.expires_at < time.time():
                return "That code has expired. Go back to the application and request a new code."
            grant.approved = True
        return None

    def device_polls(self, user_code: str) -> int | None:
        """How often the client polled while ``user_code`` waited for sign-in (None: no such code)."""
        wanted = user_code.strip().upper().replace("-", "").replace(" ", "")
        with self._lock:
            grant = next((g for g in self._devices.values() if g.user_code == wanted), None)
        return None if grant is None else grant.polls

    def _redeem_device_code(self, form: dict[str, str], client_id: str) -> str:
        device_code = form.get("device_code") or form.get("code")
        if not device_code:
            raise missing_parameter("device_code")
        with self._lock:
            grant = self._devices.get(device_code)
            if grant is None or grant.client_id != client_id:
                raise invalid_grant("The provided device_code is not valid.")
            if grant.expires_at < time.time():
                raise EntraError(
                    400,
                    "expired_token",
                    70020,
                    "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
                )
            if not grant.approved:
                grant.polls += 1
                raise EntraError(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                )
            del self._devices[device_code]  # a device code is redeemed once
        return grant.resource

    def _redeem_refresh_token(self, form: dict[str, str], client_id: str) -> str:
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            raise missing_parameter("refresh_token")
        with self._lock:
            grant = self._refresh.get(refresh_token)
        if grant is None or grant.client_id != client_id:
            raise invalid_grant("The provided refresh_token is not valid.")
        if grant.expires_at < time.time():
            raise EntraError(
                400,
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to inactivity.",
            )
        return self._user_resource(form.get("scope", ""))

    def _user_tokens(self, resource: str, client_id: str, acr: str) -> dict[str, Any]:
        """The token response of a user sign-in: access, refresh and ID token plus msal's client_info."""
        now = time.time()
        refresh_token = secrets.token_urlsafe(64)
        with self._lock:
            self._refresh[refresh_token] = RefreshGrant(client_id, now + REFRESH_LIFETIME_S)
        client_info = b64url(json.dumps({"uid": DEMO_USER_OID, "utid": self.ctx.tenant_id}).encode())
        return {
            "token_type": "Bearer",
            "scope": " ".join(f"{resource.rstrip('/')}/{p}" for p in self._delegated_permissions(resource)),
            "expires_in": EXPIRES_IN_S,
            "ext_expires_in": EXPIRES_IN_S,
            "access_token": self.issue(resource, delegated=True, appidacr=acr, client_id=client_id, now=now),
            "refresh_token": refresh_token,
            "id_token": self._id_token(client_id, now),
            "client_info": client_info,
        }

    async def _deviceauth(self, request: Request) -> Response:
        """The verification page: a form for the user code; posting it signs the demo user in."""
        if request.path_params["tenant"].lower() != self.ctx.tenant_id.lower():
            return HTMLResponse(html_page("Sign in", "This tenant does not exist."), 400)
        if request.method == "GET":
            return HTMLResponse(html_page("Enter code", code_form(request.query_params.get("otc", ""))))
        problem = self.approve_user_code((await read_form(request)).get("user_code", ""))
        if problem:
            return HTMLResponse(html_page("Enter code", f"<p>{html.escape(problem)}</p>{code_form('')}"), 400)
        message = f"You have signed in as {html.escape(DEMO_USER_UPN)}. You may now close this window."
        return HTMLResponse(html_page("Signed in", f"<p>{message}</p>"))
