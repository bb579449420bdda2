"""The login host: the ``/oauth2/v2.0/token`` endpoint (client credentials with a secret or
a certificate assertion), OIDC and instance discovery, the signing keys, and the AADSTS
error answers, shaped like Entra's (docs/design.md#emulator)."""

from __future__ import annotations

import datetime as dt
import secrets
import urllib.parse
import uuid
from typing import Any

from ._http import JSON_CONTENT_TYPE, Exchange, Request, Response, TokenError, dumps
from .state import (
    GRAPH_APP_ID,
    LOGIN_HOSTS,
    App,
    Tenant,
    TenantState,
    cloud_of_host,
    tenant_segment_kind,
)
from .tokens import ASSERTION_TYPE, SigningKey, check_assertion

_OPERATIONS = (
    ("/oauth2/v2.0/token", "token"),
    ("/.well-known/openid-configuration", "openid"),
    ("/discovery/instance", "discovery"),
    ("/discovery/v2.0/keys", "keys"),
)


def _aad_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class TokenService:
    def __init__(self, state: TenantState, signing_key: SigningKey) -> None:
        self._state = state
        self._key = signing_key

    @staticmethod
    def operation(method: str, path: str) -> str | None:
        """The counter key of a login-host request (None: not an endpoint of ours)."""
        low = path.lower().rstrip("/")
        return next((op for suffix, op in _OPERATIONS if low.endswith(suffix)), None)

    def handle(self, req: Request, ex: Exchange, parsed: urllib.parse.SplitResult) -> Response:
        segments = [s for s in parsed.path.split("/") if s]
        op = ex.operation
        if op == "discovery":
            return self._instance_discovery(req, ex, parsed)
        if not segments or op is None:
            return Response(404, b"", self._headers(ex))
        seg = segments[0]
        try:
            tenant = self._resolve_tenant(req.host, seg, oidc=op != "token")
            ex.tenant = tenant.id
            if op == "openid":
                return self._openid(req, ex, tenant)
            if op == "keys":
                return Response(200, dumps(self._key.jwks()), self._headers(ex))
            if req.method != "POST":
                raise TokenError(400, "invalid_request", 900561, "The endpoint only accepts POST requests. Received a GET request.")
            return self._token(req, ex, tenant)
        except TokenError as e:
            return self.error(ex, e)

    # ------------------------------------------------------------------ error answers

    def error(self, ex: Exchange, err: TokenError) -> Response:
        now = self._state.now()
        correlation = ex.client_request_id or str(uuid.uuid4())
        ts = _aad_time(now)
        body = {
            "error": err.error,
            "error_description": f"AADSTS{err.code}: {err.description} Trace ID: {ex.request_id} "
            f"Correlation ID: {correlation} Timestamp: {ts}",
            "error_codes": [err.code],
            "timestamp": ts,
            "trace_id": ex.request_id,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={err.code}",
        }
        if ex.operation == "token":
            self._state.count("token_error")
        return Response(err.status, dumps(body), self._headers(ex))

    def status_error(self, req: Request, ex: Exchange, status: int) -> Response:
        """The answer Entra gives with ``status`` (an emulated fault, or an internal error)."""
        if status >= 500:
            err = TokenError(status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again.")
        elif status == 429:
            err = TokenError(429, "temporarily_unavailable", 50196, "The server terminated an operation because it encountered a client request loop.")
        elif status == 401:
            err = TokenError(401, "invalid_client", 7000215, "Invalid client secret provided.")
        else:
            err = TokenError(status, "invalid_request", 90014, "The request was rejected (emulated fault).")
        return self.error(ex, err)

    def throttled(self, req: Request, ex: Exchange) -> Response:
        return self.status_error(req, ex, 429)

    @staticmethod
    def _headers(ex: Exchange) -> list[tuple[str, str]]:
        h = [
            ("Content-Type", JSON_CONTENT_TYPE),
            ("Cache-Control", "no-store, no-cache"),
            ("Pragma", "no-cache"),
            ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
            ("x-ms-request-id", ex.request_id),
        ]
        if ex.client_request_id:
            h.append(("client-request-id", ex.client_request_id))
        return h

    # ------------------------------------------------------------------ discovery

    def _resolve_tenant(self, host: str, seg: str, *, oidc: bool) -> Tenant:
        error = "invalid_tenant" if oidc else "invalid_request"
        if tenant_segment_kind(seg) == "malformed":
            raise TokenError(
                400,
                error,
                900023,
                f"Specified tenant identifier '{seg}' is neither a valid DNS name, nor a valid external domain.",
            )
        tenant = self._state.find_tenant(seg)
        if tenant is None or tenant.cloud not in cloud_of_host(host):
            raise TokenError(
                400,
                error,
                90002,
                f"Tenant '{seg}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud. Check with your subscription administrator, this may "
                "happen if there are no active subscriptions for the tenant.",
            )
        return tenant

    def _openid(self, req: Request, ex: Exchange, tenant: Tenant) -> Response:
        base = f"https://{req.host}/{tenant.id}"
        doc = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"https://{req.host}/{tenant.id}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"https://{tenant.graph_host}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "appid", "roles"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": req.host.removeprefix("login."),
            "msgraph_host": tenant.graph_host,
        }
        return Response(200, dumps(doc), self._headers(ex))

    def _instance_discovery(self, req: Request, ex: Exchange, parsed: urllib.parse.SplitResult) -> Response:
        q = urllib.parse.parse_qs(parsed.query)
        auth = (q.get("authorization_endpoint") or [f"https://{req.host}/common/oauth2/v2.0/authorize"])[0]
        a = urllib.parse.urlsplit(auth)
        tenant = [s for s in a.path.split("/") if s][:1] or ["common"]
        doc = {
            "tenant_discovery_endpoint": f"https://{a.hostname}/{tenant[0]}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": h, "preferred_cache": h, "aliases": [h]} for h in LOGIN_HOSTS],
        }
        return Response(200, dumps(doc), self._headers(ex))

    # ------------------------------------------------------------------ the token endpoint

    def _token(self, req: Request, ex: Exchange, tenant: Tenant) -> Response:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if not grant:
            raise TokenError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
        if grant != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'.")
        client_id = (form.get("client_id") or "").strip().lower()
        if not client_id:
            raise TokenError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'client_id'.")
        app = self._state.find_app(tenant, client_id)
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory "
                f"'{tenant.domain}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may have sent "
                "your authentication request to the wrong tenant.",
            )
        acr = self._authenticate_client(req, form, tenant, app)
        resource = self._check_scope(tenant, form.get("scope"))
        if app.blocked_by_policy:
            # Conditional Access is evaluated after the client proved who it is.
            raise TokenError(
                400,
                "access_denied",
                53003,
                "Access has been blocked by Conditional Access policies. The access policy does not "
                "allow token issuance.",
            )
        lifetime = self._state.token_lifetime
        token = self._key.sign(self._claims(tenant, app, resource, acr, lifetime))
        body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
        self._state.count("token_ok")
        return Response(200, dumps(body), self._headers(ex))

    def _authenticate_client(self, req: Request, form: dict[str, str], tenant: Tenant, app: App) -> str:
        """The ``appidacr`` of a client that proved who it is: "1" a secret, "2" a certificate."""
        assertion = form.get("client_assertion")
        secret = form.get("client_secret")
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise TokenError(
                    400,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'client_assertion_type'.",
                )
            check_assertion(assertion, app=app, tenant=tenant, host=req.host, now=self._state.now())
            return "2"
        if not secret:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if app.secret is None or not secrets.compare_digest(secret.encode(), app.secret.encode()):
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the "
                "client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        if app.secret_expired:
            raise TokenError(
                401,
                "invalid_client",
                7000222,
                f"The provided client secret keys for app '{app.client_id}' are expired. Visit the "
                "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or "
                "consider using certificate credentials for added security: https://aka.ms/certCreds.",
            )
        return "1"

    def _claims(self, tenant: Tenant, app: App, resource: str, acr: str, lifetime: int) -> dict[str, Any]:
        now = int(self._state.now())
        return {
            "aud": resource,
            "iss": f"https://sts.windows.net/{tenant.id}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "aio": secrets.token_urlsafe(24),
            "app_displayname": "entragate (emulated)",
            "appid": app.client_id,
            "appidacr": acr,
            "idp": f"https://sts.windows.net/{tenant.id}/",
            "idtyp": "app",
            "oid": app.object_id,
            "roles": sorted(app.roles),
            "sub": app.object_id,
            "tenant_region_scope": "NA",
            "tid": tenant.id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
        }

    @staticmethod
    def _check_scope(tenant: Tenant, scope: str | None) -> str:
        if not scope:
            raise TokenError(400, "invalid_request", 900144, "The request body must contain the following parameter: 'scope'.")
        parts = [p for p in scope.split() if p not in ("openid", "profile", "offline_access")]
        if len(parts) != 1 or not parts[0].endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a "
                "scope value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = parts[0][: -len("/.default")].rstrip("/")
        expected = f"https://{tenant.graph_host}"
        if resource.lower() in (expected, GRAPH_APP_ID):
            return expected
        raise TokenError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named {tenant.domain}. "
            "This can happen if the application has not been installed by the administrator of the tenant "
            "or consented to by any user in the tenant. You might have sent your authentication request to "
            "the wrong tenant.",
        )
