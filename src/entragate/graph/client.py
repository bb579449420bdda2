"""Microsoft Graph named locations: the four endpoints entragate needs, nothing more."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests

from entragate.config import Config
from entragate.errors import (
    AuthenticationFailed,
    RequestRejected,
    classify_exception,
    from_graph_response,
)
from entragate.graph.identity import TokenProvider
from entragate.graph.matching import resolve_location
from entragate.transport import EntraSession, new_session

IP_LOCATION = "#microsoft.graph.ipNamedLocation"
IPV4_RANGE = "#microsoft.graph.iPv4CidrRange"
IPV6_RANGE = "#microsoft.graph.iPv6CidrRange"
LOCATIONS_PATH = "/identity/conditionalAccess/namedLocations"
POLICIES_PATH = "/identity/conditionalAccess/policies"
MAX_RANGES_PER_LOCATION = 2000


@dataclass(frozen=True)
class NamedLocation:
    id: str
    display_name: str
    odata_type: str
    is_trusted: bool
    cidrs: tuple[str, ...]

    @property
    def is_ip(self) -> bool:
        return self.odata_type == IP_LOCATION

    @classmethod
    def from_graph(cls, item: dict[str, Any]) -> NamedLocation:
        ranges = item.get("ipRanges") or []
        return cls(
            id=str(item.get("id", "")),
            display_name=str(item.get("displayName", "")),
            odata_type=str(item.get("@odata.type", "")),
            is_trusted=bool(item.get("isTrusted", False)),
            cidrs=tuple(str(r.get("cidrAddress", "")) for r in ranges if isinstance(r, dict)),
        )


def ip_ranges_body(cidrs: Iterable[str]) -> list[dict[str, str]]:
    """Each range with its own @odata.type: Graph rejects a list that omits them.

    The ranges are canonical already (the planner's collapse, or validated static
    ranges), so each is only told IPv4 from IPv6: parsing 2,000 of them with
    ``ipaddress`` on every write held the interpreter for milliseconds while grants
    waited (docs/design.md#grant-path)."""
    return [
        {"@odata.type": IPV6_RANGE if ":" in cidr else IPV4_RANGE, "cidrAddress": cidr}
        for cidr in cidrs
    ]


ResponseObserver = Callable[[str, int], None]


class GraphClient:
    """Named-locations operations; every failure leaves as an ``EntraError``.

    ``before_request`` is called before every request (reads cost throttling budget
    too, so the sync pacer hooks in here); ``write_guard`` is called last before
    every write is sent and may raise to stop it (the sync engine checks that it
    still holds the writer lease); ``on_response(method, status)`` feeds metrics.
    """

    def __init__(
        self,
        config: Config,
        session: EntraSession | None = None,
        tokens: TokenProvider | None = None,
        *,
        before_request: Callable[[], None] | None = None,
        on_response: ResponseObserver | None = None,
    ) -> None:
        self.config = config
        self.session = session or new_session(config)
        self.tokens = tokens or TokenProvider(config, self.session)
        self.before_request = before_request
        self.on_response = on_response
        self.write_guard: Callable[[], None] | None = None
        self.last_request_id: str | None = None

    @property
    def host(self) -> str:
        return self.config.graph_host

    def _url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.config.graph_base}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Any = None,
        params: dict[str, str] | None = None,
        write: bool = False,
        permission: str | None = None,
    ) -> requests.Response:
        retried_auth = False
        while True:
            token = self.tokens.access_token()
            if self.before_request is not None:
                self.before_request()
            if write and self.write_guard is not None:
                self.write_guard()
            client_request_id = str(uuid.uuid4())
            try:
                response = self.session.request(
                    method,
                    self._url(path),
                    json=json,
                    params=params,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "client-request-id": client_request_id,
                        "return-client-request-id": "true",
                        "Accept": "application/json",
                    },
                )
            except Exception as exc:
                raise classify_exception(exc, host=self.host, operation=operation) from exc
            self.last_request_id = response.headers.get("request-id")
            if self.on_response is not None:
                self.on_response(method, response.status_code)
            if response.status_code < 400:
                return response
            error = from_graph_response(response, operation=operation, permission=permission)
            if isinstance(error, AuthenticationFailed) and not retried_auth:
                # A cached token can be revoked or rotated early; fetch a fresh one once.
                retried_auth = True
                self.tokens.invalidate()
                continue
            raise error

    # ---------------------------------------------------------------- reads

    def list_locations(self, *, ip_only: bool = False, page_size: int | None = None) -> list[NamedLocation]:
        query: dict[str, str] = {}
        if ip_only:
            query["$filter"] = "isof('microsoft.graph.ipNamedLocation')"
        if page_size:
            query["$top"] = str(page_size)
        params: dict[str, str] | None = query or None
        url: str | None = LOCATIONS_PATH
        found: list[NamedLocation] = []
        while url:
            body = self.request("GET", url, params=params, operation="list named locations").json()
            found.extend(NamedLocation.from_graph(item) for item in body.get("value", []))
            url = body.get("@odata.nextLink")
            params = None  # the next link already carries the query
        return found

    def list_policies(self) -> list[dict[str, Any]]:
        """The tenant's Conditional Access policies, as Graph shapes them (needs Policy.Read.All)."""
        url: str | None = POLICIES_PATH
        found: list[dict[str, Any]] = []
        while url:
            body = self.request("GET", url, operation="list Conditional Access policies").json()
            found.extend(item for item in body.get("value", []) if isinstance(item, dict))
            url = body.get("@odata.nextLink")
        return found

    def get_location(self, location_id: str) -> NamedLocation:
        response = self.request(
            "GET", f"{LOCATIONS_PATH}/{location_id}", operation=f"read named location {location_id}"
        )
        return NamedLocation.from_graph(response.json())

    def find_location(self, name_or_id: str, *, required: bool = True) -> NamedLocation | None:
        """The one IP named location with this id or display name (ENTRA006 otherwise);
        None when a name matches nothing and ``required`` is off (an id is always required)."""
        return resolve_location(self.list_locations(), name_or_id, create=not required, host=self.host)

    # ---------------------------------------------------------------- writes

    def _check_ranges(self, cidrs: list[str], operation: str) -> None:
        if not cidrs:
            raise RequestRejected(
                "Graph requires at least one IP range", host=self.host, operation=operation
            )
        if len(cidrs) > MAX_RANGES_PER_LOCATION:
            raise RequestRejected(
                f"{len(cidrs)} ranges exceed Microsoft's {MAX_RANGES_PER_LOCATION} per location",
                host=self.host,
                operation=operation,
            )

    def create_location(self, display_name: str, cidrs: Iterable[str], *, trusted: bool = False) -> NamedLocation:
        ranges = list(cidrs)
        operation = f"create named location {display_name!r}"
        self._check_ranges(ranges, operation)
        body = {
            "@odata.type": IP_LOCATION,
            "displayName": display_name,
            "isTrusted": trusted,
            "ipRanges": ip_ranges_body(ranges),
        }
        response = self.request("POST", LOCATIONS_PATH, json=body, operation=operation, write=True)
        return NamedLocation.from_graph(response.json())

    def replace_ranges(self, location: NamedLocation, cidrs: Iterable[str]) -> None:
        """PATCH has no append: the whole ``ipRanges`` list is sent every time."""
        ranges = list(cidrs)
        operation = f"update named location {location.display_name!r}"
        self._check_ranges(ranges, operation)
        body = {"@odata.type": IP_LOCATION, "ipRanges": ip_ranges_body(ranges)}
        self.request(
            "PATCH", f"{LOCATIONS_PATH}/{location.id}", json=body, operation=operation, write=True
        )

    def set_trusted(self, location: NamedLocation, trusted: bool) -> None:
        body = {"@odata.type": IP_LOCATION, "isTrusted": trusted}
        self.request(
            "PATCH",
            f"{LOCATIONS_PATH}/{location.id}",
            json=body,
            operation=f"mark named location {location.display_name!r} trusted={trusted}",
            write=True,
        )

    def delete_location(self, location: NamedLocation) -> None:
        """A trusted location cannot be deleted; untrust it first."""
        if location.is_trusted:
            self.set_trusted(location, False)
        self.request(
            "DELETE",
            f"{LOCATIONS_PATH}/{location.id}",
            operation=f"delete named location {location.display_name!r}",
            write=True,
        )


__all__ = [
    "IP_LOCATION",
    "GraphClient",
    "NamedLocation",
    "ip_ranges_body",
]
