"""The Graph host: the Conditional Access named-location routes, with Graph's bearer-token
checks, permissions, paging, ``$filter``/``$select``/``$top``, per-tenant throttling and
error answers; sign-in logs and session revocation are ``directory.py``'s
(docs/design.md#emulator)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import time
import urllib.parse
from typing import Any

from ._http import (
    JSON_CONTENT_TYPE,
    STATUS_CODES,
    STATUS_MESSAGES,
    Exchange,
    GraphError,
    Request,
    Response,
    dumps,
    graph_headers,
)
from .directory import DirectoryRoutes
from .locations import IP_TYPE, MAX_LOCATIONS, graph_time, new_location, patch_location
from .odata import decode_skiptoken, encode_skiptoken, parse_filter, select
from .policies import POLICIES_PATH, READ_ROLE
from .state import (
    GRAPH_APP_ID,
    LOGIN_HOSTS,
    READ_ROLES,
    WRITE_ROLE,
    Tenant,
    TenantState,
    WriteRecord,
)
from .tokens import MalformedJwt, SigningKey

THROTTLE_SLACK = 0.05  # a request up to 5 % early is admitted (jitter), still ≤ rate long-term
LOCATIONS_PATH = "identity/conditionalaccess/namedlocations"
DELETED_PATH = "identity/conditionalaccess/deleteditems/namedlocations"
LIST_OPTIONS = ("$filter", "$top", "$select", "$skiptoken", "$count", "$orderby")


def _selected_fields(query: dict[str, list[str]]) -> list[str] | None:
    if "$select" not in query:
        return None
    return [f.strip() for f in query["$select"][0].split(",") if f.strip()]


def _entity_context(host: str) -> dict[str, Any]:
    return {"@odata.context": f"https://{host}/v1.0/$metadata#identity/conditionalAccess/namedLocations/$entity"}


def _not_found(loc_id: str) -> GraphError:
    # Graph's Conditional Access routes answer a missing id with ResourceNotFound.
    return GraphError(404, "ResourceNotFound", f"Resource '{loc_id}' does not exist or one of its queried "
                      "reference-property objects are not present.")


class GraphApi:
    def __init__(self, state: TenantState, signing_key: SigningKey) -> None:
        self._state = state
        self._key = signing_key
        self._directory = DirectoryRoutes(state.lock, state.now)

    @staticmethod
    def operation(method: str, path: str) -> str:
        """The counter key of a Graph request (``graph other`` for routes we do not serve)."""
        low = path.lower().rstrip("/")
        for prefix in ("/v1.0/", "/beta/"):
            if low.startswith(prefix + DELETED_PATH):
                rest = low[len(prefix + DELETED_PATH) :]
                if rest == "":
                    return f"{method} deletedNamedLocations"
                if rest.endswith("/restore") and rest.count("/") == 2:
                    return f"{method} restoreNamedLocation"
                if rest.count("/") == 1:
                    return f"{method} deletedNamedLocation"
                return "graph other"
            if low.startswith(prefix + LOCATIONS_PATH):
                rest = low[len(prefix + LOCATIONS_PATH) :]
                if rest == "":
                    return f"{method} namedLocations"
                if rest.count("/") == 1:
                    return f"{method} namedLocation"
            if low == prefix + POLICIES_PATH:
                return f"{method} policies"
            if low.startswith(prefix) and (found := DirectoryRoutes.operation(method, low[len(prefix) :])):
                return found
        return "graph other"

    def handle(self, req: Request, ex: Exchange, parsed: urllib.parse.SplitResult) -> Response:
        try:
            tenant, roles = self._authenticate(req)
            ex.tenant = tenant.id
            op = ex.operation
            if op in DirectoryRoutes.OPERATIONS:  # not Conditional Access: its own limits
                return self._directory_route(req, ex, tenant, roles, parsed)
            self._throttle(tenant)
            if op is None or op == "graph other":
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Resource not found for the segment '{parsed.path.rstrip('/').rsplit('/', 1)[-1]}'.",
                )
            write = req.method in ("POST", "PATCH", "DELETE", "PUT")
            if not (roles & READ_ROLES) or (write and WRITE_ROLE not in roles):
                raise GraphError(
                    403,
                    "AccessDenied",
                    "You cannot perform the requested operation, required scopes are missing in the token.",
                )
            if op.endswith(" policies") and READ_ROLE not in roles:
                raise GraphError(
                    403,
                    "AccessDenied",
                    "You cannot perform the requested operation, required scopes are missing in the token.",
                )
            return self._route(req, ex, tenant, op, parsed)
        except GraphError as e:
            if e.status == 429:
                self._state.count("throttled")
                return self.throttled(req, ex)
            if e.status == 401:
                ex.extra_headers.append(
                    (
                        "WWW-Authenticate",
                        f'Bearer realm="", authorization_uri="https://{LOGIN_HOSTS[0]}/common/oauth2/authorize", '
                        f'client_id="{GRAPH_APP_ID}"',
                    )
                )
            return self.error(ex, e.status, e.code, e.message)

    def _route(self, req: Request, ex: Exchange, tenant: Tenant, op: str, parsed: urllib.parse.SplitResult) -> Response:
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        if op == "GET namedLocations":
            return self._list(req, ex, tenant, query)
        if op == "POST namedLocations":
            return self._create(req, ex, tenant)
        if op == "GET policies":
            return self._list_policies(req, ex, tenant)
        if op == "GET deletedNamedLocations":
            with self._state.lock:
                deleted = copy.deepcopy(list(tenant.history.deleted_items(self._state.now()).values()))
            return Response(200, dumps({"value": deleted}), self._headers(ex))
        if op == "POST restoreNamedLocation":
            return self._restore(ex, tenant, parsed.path.rstrip("/").rsplit("/", 2)[-2])
        if op.endswith(" deletedNamedLocation"):
            return self._deleted_item(req, ex, tenant, urllib.parse.unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1]))
        if op.endswith(" namedLocation"):
            loc_id = urllib.parse.unquote(parsed.path.rstrip("/").rsplit("/", 1)[-1])
            if req.method == "GET":
                return self._get(ex, tenant, loc_id, query)
            if req.method == "PATCH":
                return self._patch(req, ex, tenant, loc_id)
            if req.method == "DELETE":
                return self._delete(ex, tenant, loc_id)
        raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed for the request target.")

    def _directory_route(self, req: Request, ex: Exchange, tenant: Tenant, roles: set[str],
                         parsed: urllib.parse.SplitResult) -> Response:
        op = str(ex.operation)
        limited = self._state.rate_limit is not None and op == "GET signIns"
        try:
            body = self._directory.handle(tenant, roles, op, parsed.path,
                                          urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
                                          limited and self._directory.reports_throttled(tenant))
        except GraphError as e:
            if e.status == 429:  # the reports service says when to come back
                self._state.count("throttled reports")
                ex.extra_headers.append(("Retry-After", "10"))
            return self.error(ex, e.status, e.code, e.message)
        return Response(200, dumps(body), self._headers(ex))

    # ------------------------------------------------------------------ error answers

    def error(self, ex: Exchange, status: int, code: str, message: str) -> Response:
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": dt.datetime.fromtimestamp(self._state.now(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": ex.request_id,
                    "client-request-id": ex.client_request_id or ex.request_id,
                },
            }
        }
        return Response(status, dumps(body), self._headers(ex, JSON_CONTENT_TYPE))

    def status_error(self, req: Request, ex: Exchange, status: int) -> Response:
        """The answer Graph gives with ``status`` (an emulated fault, or an internal error)."""
        if status == 429:
            return self.throttled(req, ex)
        code = STATUS_CODES.get(status, "serviceNotAvailable" if status >= 500 else "BadRequest")
        message = STATUS_MESSAGES.get(
            status, "The service is currently unavailable." if status >= 500 else "The request was rejected."
        )
        return self.error(ex, status, code, message)

    def throttled(self, req: Request, ex: Exchange) -> Response:
        return self.error(
            ex,
            429,
            "TooManyRequests",
            "Too many requests. The Conditional Access resources of this tenant allow about "
            "1 request per second; retry later.",
        )

    _headers = staticmethod(graph_headers)

    # ------------------------------------------------------------------ authentication, throttling

    def _authenticate(self, req: Request) -> tuple[Tenant, set[str]]:
        auth = req.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self._key.claims(token)
        except MalformedJwt:
            raise GraphError(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.") from None
        if claims is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid signature.")
        if claims.get("aud") != f"https://{req.host}":
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._state.now():
            raise GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        tenant = self._state.get_tenant(str(claims.get("tid")))
        app = self._state.find_app(tenant, str(claims.get("appid")))
        if tenant is None or app is None or tenant.graph_host != req.host:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token validation failure.")
        # Like Graph, authorise by the roles in the token: a permission granted after the
        # token was issued is seen only in a new token.
        roles = claims.get("roles")
        return tenant, {str(r) for r in roles} if isinstance(roles, list) else set()

    def _throttle(self, tenant: Tenant) -> None:
        rate = self._state.rate_limit
        if rate is None or rate <= 0:
            return
        with self._state.lock:
            now = time.monotonic()
            if tenant.bucket_time is not None:
                tenant.bucket = min(1.0, tenant.bucket + (now - tenant.bucket_time) * rate)
            tenant.bucket_time = now
            if tenant.bucket < 1.0 - THROTTLE_SLACK:
                raise GraphError(429, "TooManyRequests", "throttled")
            tenant.bucket -= 1.0

    # ------------------------------------------------------------------ named locations

    @staticmethod
    def _json_body(req: Request) -> dict[str, Any]:
        ctype = (req.headers.get("Content-Type") or "").lower()
        if "json" not in ctype:
            raise GraphError(415, "UnsupportedMediaType", "The request must have Content-Type application/json.")
        try:
            body = json.loads(req.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from None
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The request payload must be a JSON object.")
        return body

    def _list(self, req: Request, ex: Exchange, tenant: Tenant, query: dict[str, list[str]]) -> Response:
        for k in query:
            if k.startswith("$") and k not in LIST_OPTIONS:
                raise GraphError(400, "BadRequest", f"Query option '{k}' is not supported.")
        pred = parse_filter(query["$filter"][0]) if query.get("$filter", [""])[0] else None
        page = self._state.page_size
        if "$top" in query:
            try:
                page = int(query["$top"][0])
            except ValueError:
                raise GraphError(400, "BadRequest", "Invalid value for $top.") from None
            if not 1 <= page <= 999:
                raise GraphError(400, "BadRequest", "$top must be between 1 and 999.")
        offset = decode_skiptoken(query["$skiptoken"][0]) if "$skiptoken" in query else 0
        fields = _selected_fields(query)
        with self._state.lock:
            shown = tenant.history.visible(tenant.locations, self._state.now(), self._state.read_lag_seconds)
            items = [o for o in shown if pred is None or pred(o)]
            chunk = [select(o, fields) for o in items[offset : offset + page]]
        base = f"https://{req.host}{req.target.split('?', 1)[0]}"
        version = "beta" if "/beta/" in base else "v1.0"
        body: dict[str, Any] = {
            "@odata.context": f"https://{req.host}/{version}/$metadata#identity/conditionalAccess/namedLocations"
            + (f"({','.join(fields)})" if fields else "")
        }
        if offset + page < len(items):
            params = {k: v[0] for k, v in query.items() if k != "$skiptoken"}
            params["$skiptoken"] = encode_skiptoken(offset + page)
            body["@odata.nextLink"] = base + "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="$,'()")
        body["value"] = chunk
        return Response(200, dumps(body), self._headers(ex))

    def _list_policies(self, req: Request, ex: Exchange, tenant: Tenant) -> Response:
        with self._state.lock:
            items = copy.deepcopy(list(tenant.policies.values()))
        version = "beta" if "/beta/" in req.target.lower() else "v1.0"
        body = {
            "@odata.context": f"https://{req.host}/{version}/$metadata#identity/conditionalAccess/policies",
            "value": items,
        }
        return Response(200, dumps(body), self._headers(ex))

    def _get(self, ex: Exchange, tenant: Tenant, loc_id: str, query: dict[str, list[str]]) -> Response:
        fields = _selected_fields(query)
        with self._state.lock:
            obj = tenant.history.visible_one(tenant.locations, loc_id, self._state.now(), self._state.read_lag_seconds)
            if obj is None:
                raise _not_found(loc_id)
            out = _entity_context(tenant.graph_host)
            out.update(select(obj, fields))
        return Response(200, dumps(out), self._headers(ex))

    def _create(self, req: Request, ex: Exchange, tenant: Tenant) -> Response:
        body = self._json_body(req)
        obj = new_location(body, self._state.now())
        with self._state.lock:
            if len(tenant.locations) >= MAX_LOCATIONS:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"The tenant already has {len(tenant.locations)} named locations; at most {MAX_LOCATIONS} are allowed.",
                )
            tenant.locations[obj["id"]] = obj
            self._remember(tenant, obj["id"], None)
            ranges = [r["cidrAddress"] for r in obj.get("ipRanges", [])] if obj["@odata.type"] == IP_TYPE else None
            self._log_write(tenant, "POST", obj["id"], ex, ranges)
            out = _entity_context(req.host)
            out.update(copy.deepcopy(obj))
        headers = self._headers(ex)
        headers.append(("Location", f"https://{req.host}/v1.0/identity/conditionalAccess/namedLocations/{obj['id']}"))
        return Response(201, dumps(out), headers)

    def _patch(self, req: Request, ex: Exchange, tenant: Tenant, loc_id: str) -> Response:
        body = self._json_body(req)
        with self._state.lock:
            obj = tenant.locations.get(loc_id)
            if obj is None:
                raise _not_found(loc_id)
            before = copy.deepcopy(obj)
            ranges = patch_location(obj, body, self._state.now())
            self._remember(tenant, loc_id, before)
            self._log_write(tenant, "PATCH", loc_id, ex, ranges)
        return Response(204, b"", self._headers(ex, None))

    def _delete(self, ex: Exchange, tenant: Tenant, loc_id: str) -> Response:
        with self._state.lock:
            obj = tenant.locations.get(loc_id)
            if obj is None:
                raise _not_found(loc_id)
            if obj.get("isTrusted"):
                raise GraphError(
                    400,
                    "BadRequest",
                    "A trusted named location cannot be deleted. Mark it as not trusted (isTrusted false) first.",
                )
            del tenant.locations[loc_id]
            self._remember(tenant, loc_id, obj)
            if self._state.keep_deleted:  # restorable, like Graph's deleted items
                tenant.history.keep_deleted(loc_id, obj, self._state.now(), graph_time)
            self._log_write(tenant, "DELETE", loc_id, ex, None)
        return Response(204, b"", self._headers(ex, None))

    def _deleted_item(self, req: Request, ex: Exchange, tenant: Tenant, loc_id: str) -> Response:
        """One deleted item: GET reads it, DELETE removes it for good (it cannot be restored after)."""
        with self._state.lock:
            obj = tenant.history.deleted_items(self._state.now()).get(loc_id)
            if obj is None:
                raise _not_found(loc_id)
            if req.method == "GET":
                return Response(200, dumps(copy.deepcopy(obj)), self._headers(ex))
            if req.method == "DELETE":
                tenant.history.forget_deleted(loc_id)
                self._log_write(tenant, "DELETE", loc_id, ex, None)
                return Response(204, b"", self._headers(ex, None))
        raise GraphError(405, "BadRequest", "Specified HTTP method is not allowed for the request target.")

    def _restore(self, ex: Exchange, tenant: Tenant, loc_id: str) -> Response:
        with self._state.lock:
            obj = tenant.history.restore(loc_id, self._state.now())
            if obj is None:
                raise _not_found(loc_id)
            tenant.locations[loc_id] = obj
            self._remember(tenant, loc_id, None)
            self._log_write(tenant, "POST", loc_id, ex, [r["cidrAddress"] for r in obj.get("ipRanges", [])])
            out = _entity_context(tenant.graph_host)
            out.update(copy.deepcopy(obj))
        return Response(200, dumps(out), self._headers(ex))

    def _remember(self, tenant: Tenant, loc_id: str, before: dict[str, Any] | None) -> None:
        tenant.history.record(loc_id, before, self._state.now(), self._state.read_lag_seconds)

    def _log_write(self, tenant: Tenant, method: str, loc_id: str, ex: Exchange, ranges: list[str] | None) -> None:
        self._state.log_write(
            WriteRecord(time.time(), tenant.id, method, loc_id, ex.client_request_id, ex.request_id, ranges)
        )
