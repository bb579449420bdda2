"""Tenant state and the Graph / token endpoint behaviour, independent of HTTP plumbing."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("login.microsoftonline.com", "graph.microsoft.com"),
    "usgov": ("login.microsoftonline.us", "graph.microsoft.us"),
    "usgov-dod": ("login.microsoftonline.us", "dod-graph.microsoft.us"),
    "china": ("login.chinacloudapi.cn", "microsoftgraph.chinacloudapi.cn"),
}
DOMAIN_SUFFIX = {
    "global": "onmicrosoft.com",
    "usgov": "onmicrosoft.us",
    "usgov-dod": "onmicrosoft.us",
    "china": "partner.onmschina.cn",
}
LOGIN_HOSTS: tuple[str, ...] = tuple(dict.fromkeys(v[0] for v in CLOUDS.values()))
GRAPH_HOSTS: tuple[str, ...] = tuple(dict.fromkeys(v[1] for v in CLOUDS.values()))
ALL_HOSTS: tuple[str, ...] = LOGIN_HOSTS + GRAPH_HOSTS

READ_ROLES = frozenset({"Policy.Read.All", "Policy.ReadWrite.ConditionalAccess"})
WRITE_ROLE = "Policy.ReadWrite.ConditionalAccess"

IP_TYPE = "#microsoft.graph.ipNamedLocation"
COUNTRY_TYPE = "#microsoft.graph.countryNamedLocation"
V4_TYPE = "#microsoft.graph.iPv4CidrRange"
V6_TYPE = "#microsoft.graph.iPv6CidrRange"
MAX_LOCATIONS = 195
MAX_RANGES = 2000
MIN_PREFIX = 9  # Microsoft: IPv4 CIDR masks greater than /8

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DNS_RE = re.compile(r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]{2,63}$")


def cloud_of_host(host: str) -> list[str]:
    """Clouds served by ``host`` (a login host can serve two: usgov and usgov-dod)."""
    return [c for c, (login, graph) in CLOUDS.items() if host in (login, graph)]


def graph_time(t: float) -> str:
    """Graph's timestamp form: ``2024-05-06T07:08:09.1234567Z``."""
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}0Z"


class GraphError(Exception):
    """A Graph error answer: HTTP status, error ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class TokenError(Exception):
    """A token endpoint error answer (``error`` and an AADSTS code)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description


@dataclass(frozen=True)
class AppRegistration:
    """An app registration as a test (or operator) sees it.

    ``secret`` is the secret's Value (what goes in ``client_secret``); ``secret_id``
    is the GUID the portal shows next to it, which careless admins paste instead.
    """

    tenant_id: str
    client_id: str
    secret: str | None
    secret_id: str | None
    certificate_pem: bytes | None


@dataclass
class App:
    client_id: str
    secret: str | None
    secret_id: str | None
    secret_expired: bool
    certificates: list[x509.Certificate]
    roles: set[str]
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Tenant:
    id: str
    cloud: str
    domain: str
    apps: dict[str, App] = field(default_factory=dict)
    locations: dict[str, dict[str, Any]] = field(default_factory=dict)
    bucket: float = 1.0
    bucket_time: float | None = None

    @property
    def login_host(self) -> str:
        return CLOUDS[self.cloud][0]

    @property
    def graph_host(self) -> str:
        return CLOUDS[self.cloud][1]


# --------------------------------------------------------------------------- ranges


def validate_ranges(value: Any) -> list[dict[str, str]]:
    """Validate an ``ipRanges`` value as Graph does; return it normalised (odata types with '#')."""
    if not isinstance(value, list):
        raise GraphError(400, "BadRequest", "The 'ipRanges' property must be a collection of IP ranges.")
    if not value:
        raise GraphError(400, "BadRequest", "A named location must contain at least one IP range in 'ipRanges'.")
    if len(value) > MAX_RANGES:
        raise GraphError(
            400,
            "BadRequest",
            f"The named location has {len(value)} IP ranges; at most {MAX_RANGES} are allowed.",
        )
    out: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            raise GraphError(400, "BadRequest", "Each IP range must be an object.")
        otype = item.get("@odata.type")
        if not isinstance(otype, str) or not otype:
            raise GraphError(
                400, "BadRequest", "Each IP range must carry '@odata.type' (iPv4CidrRange or iPv6CidrRange)."
            )
        if not otype.startswith("#"):
            otype = "#" + otype
        if otype not in (V4_TYPE, V6_TYPE):
            raise GraphError(400, "BadRequest", f"Unknown IP range type '{otype}'.")
        extra = set(item) - {"@odata.type", "cidrAddress"}
        if extra:
            raise GraphError(
                400, "BadRequest", f"The property '{sorted(extra)[0]}' does not exist on type '{otype[1:]}'."
            )
        cidr = item.get("cidrAddress")
        if not isinstance(cidr, str) or "/" not in cidr:
            raise GraphError(400, "BadRequest", f"Invalid IP range '{cidr}': a CIDR with a prefix length is required.")
        try:
            net = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            raise GraphError(400, "BadRequest", f"Invalid IP range '{cidr}'.") from None
        if cidr != cidr.strip() or "%" in cidr:
            raise GraphError(400, "BadRequest", f"Invalid IP range '{cidr}'.")
        want = V4_TYPE if net.version == 4 else V6_TYPE
        if otype != want:
            raise GraphError(
                400, "BadRequest", f"IP range '{cidr}' does not match its type '{otype[1:]}'."
            )
        if net.prefixlen < MIN_PREFIX:
            raise GraphError(
                400,
                "BadRequest",
                f"IP range '{cidr}' is too large: the prefix length must be greater than /{MIN_PREFIX - 1}.",
            )
        out.append({"@odata.type": otype, "cidrAddress": cidr})
    return out


def ip_ranges(cidrs: Iterable[str]) -> list[dict[str, str]]:
    """Graph ``ipRanges`` objects for plain CIDR strings (portal helper)."""
    out = []
    for c in cidrs:
        net = ipaddress.ip_network(c, strict=False)
        out.append({"@odata.type": V4_TYPE if net.version == 4 else V6_TYPE, "cidrAddress": c})
    return out


# --------------------------------------------------------------------------- $filter

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<punct>[(),])|(?P<word>[A-Za-z_$@#.][A-Za-z0-9_$@#./-]*))"
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    expr = expr.rstrip()
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            raise GraphError(400, "BadRequest", f"Invalid filter clause: syntax error at position {pos} in '{expr}'.")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("str", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("punct") is not None:
            out.append(("punct", m.group("punct")))
        else:
            out.append(("word", m.group("word")))
    return out


Predicate = Any  # Callable[[dict], bool]


def parse_filter(expr: str) -> Predicate:
    """Parse the subset of OData ``$filter`` Graph accepts on named locations.

    Supported: ``isof('microsoft.graph.ipNamedLocation')``, ``displayName eq '…'``,
    ``id eq '…'``, ``startswith(displayName,'…')``, ``isTrusted eq true|false``
    (cast form ``microsoft.graph.ipNamedLocation/isTrusted`` too), joined by ``and``/``or``.
    """
    toks = _tokens(expr)
    pos = 0

    def bad(msg: str = "") -> GraphError:
        return GraphError(400, "BadRequest", f"Invalid filter clause: {msg or expr}")

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(toks):
            raise bad("unexpected end of expression")
        t = toks[pos]
        pos += 1
        return t

    def expect(kind: str, value: str | None = None) -> str:
        t = take()
        if t[0] != kind or (value is not None and t[1].lower() != value):
            raise bad(f"expected {value or kind}, found '{t[1]}'")
        return t[1]

    def prop_value(obj: dict[str, Any], prop: str) -> Any:
        if "/" in prop:
            cast, prop = prop.rsplit("/", 1)
            if obj.get("@odata.type") != "#" + cast:
                return None
        return obj.get(prop)

    def clause() -> Predicate:
        t = take()
        if t == ("punct", "("):
            inner = disjunction()
            expect("punct", ")")
            return inner
        if t[0] != "word":
            raise bad()
        word = t[1]
        if word.lower() == "not":
            inner = clause()
            return lambda o: not inner(o)
        if word.lower() == "isof":
            expect("punct", "(")
            typ = expect("str")
            expect("punct", ")")
            full = typ if typ.startswith("#") else "#" + typ
            return lambda o: o.get("@odata.type") == full
        if word.lower() == "startswith":
            expect("punct", "(")
            prop = expect("word")
            expect("punct", ",")
            prefix = expect("str").lower()
            expect("punct", ")")
            return lambda o: str(prop_value(o, prop) or "").lower().startswith(prefix)
        prop = word
        if prop.rsplit("/", 1)[-1] not in ("displayName", "id", "isTrusted"):
            raise bad(f"filtering on '{prop}' is not supported")
        op = expect("word").lower()
        if op not in ("eq", "ne"):
            raise bad(f"operator '{op}' is not supported")
        vt = take()
        val: Any
        if vt[0] == "str":
            val = vt[1]
        elif vt[0] == "word" and vt[1].lower() in ("true", "false"):
            val = vt[1].lower() == "true"
        elif vt[0] == "word" and vt[1] == "null":
            val = None
        else:
            raise bad(f"bad literal '{vt[1]}'")
        if op == "eq":
            return lambda o: prop_value(o, prop) == val
        return lambda o: prop_value(o, prop) != val

    def conjunction() -> Predicate:
        preds = [clause()]
        while (t := peek()) is not None and t[0] == "word" and t[1].lower() == "and":
            take()
            preds.append(clause())
        return lambda o: all(p(o) for p in preds)

    def disjunction() -> Predicate:
        preds = [conjunction()]
        while (t := peek()) is not None and t[0] == "word" and t[1].lower() == "or":
            take()
            preds.append(conjunction())
        return lambda o: any(p(o) for p in preds)

    pred = disjunction()
    if pos != len(toks):
        raise bad(f"unexpected '{toks[pos][1]}'")
    return pred


def encode_skiptoken(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError):
        raise GraphError(400, "BadRequest", "Invalid $skiptoken.") from None
    if offset < 0:
        raise GraphError(400, "BadRequest", "Invalid $skiptoken.")
    return offset


def select(obj: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return copy.deepcopy(obj)
    keep = {"@odata.type", "id", *fields}
    return {k: copy.deepcopy(v) for k, v in obj.items() if k in keep}


def new_location(
    body: dict[str, Any], now: float, location_id: str | None = None
) -> dict[str, Any]:
    """Validate a POST body and build the stored object."""
    otype = body.get("@odata.type")
    if isinstance(otype, str) and not otype.startswith("#"):
        otype = "#" + otype
    if otype not in (IP_TYPE, COUNTRY_TYPE):
        raise GraphError(
            400,
            "BadRequest",
            "The '@odata.type' property is required and must be "
            "'#microsoft.graph.ipNamedLocation' or '#microsoft.graph.countryNamedLocation'.",
        )
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "BadRequest", "The 'displayName' property is required.")
    if len(name) > 256:
        raise GraphError(400, "BadRequest", "The 'displayName' property is limited to 256 characters.")
    stamp = graph_time(now)
    obj: dict[str, Any] = {
        "@odata.type": otype,
        "id": location_id or str(uuid.uuid4()),
        "displayName": name,
        "createdDateTime": stamp,
        "modifiedDateTime": stamp,
    }
    readonly = {"@odata.type", "id", "createdDateTime", "modifiedDateTime", "displayName"}
    if otype == IP_TYPE:
        allowed = readonly | {"isTrusted", "ipRanges"}
        _reject_unknown(body, allowed, otype)
        if "ipRanges" not in body:
            raise GraphError(400, "BadRequest", "The 'ipRanges' property is required.")
        trusted = body.get("isTrusted", False)
        if not isinstance(trusted, bool):
            raise GraphError(400, "BadRequest", "The 'isTrusted' property must be a boolean.")
        obj["isTrusted"] = trusted
        obj["ipRanges"] = validate_ranges(body["ipRanges"])
    else:
        allowed = readonly | {"countriesAndRegions", "includeUnknownCountriesAndRegions", "countryLookupMethod"}
        _reject_unknown(body, allowed, otype)
        countries = body.get("countriesAndRegions")
        if not isinstance(countries, list) or not all(isinstance(c, str) and len(c) == 2 for c in countries):
            raise GraphError(400, "BadRequest", "The 'countriesAndRegions' property must list two-letter codes.")
        obj["countriesAndRegions"] = [c.upper() for c in countries]
        obj["includeUnknownCountriesAndRegions"] = bool(body.get("includeUnknownCountriesAndRegions", False))
        obj["countryLookupMethod"] = body.get("countryLookupMethod", "clientIpAddress")
    return obj


def _reject_unknown(body: dict[str, Any], allowed: set[str], otype: str) -> None:
    extra = sorted(k for k in body if k not in allowed and not k.startswith("@odata."))
    if extra:
        raise GraphError(400, "BadRequest", f"The property '{extra[0]}' does not exist on type '{otype[1:]}'.")


def patch_location(obj: dict[str, Any], body: dict[str, Any], now: float) -> list[str] | None:
    """Apply a PATCH body to ``obj`` in place after validating all of it first.

    Returns the new list of CIDRs when ``ipRanges`` was replaced, else None.
    """
    otype = body.get("@odata.type")
    if isinstance(otype, str) and not otype.startswith("#"):
        otype = "#" + otype
    if otype is None:
        raise GraphError(
            400,
            "BadRequest",
            "The '@odata.type' property of the named location is required in an update.",
        )
    if otype != obj["@odata.type"]:
        raise GraphError(
            400,
            "BadRequest",
            f"The '@odata.type' '{otype}' does not match the named location's type '{obj['@odata.type']}'.",
        )
    changes: dict[str, Any] = {}
    if "displayName" in body:
        name = body["displayName"]
        if not isinstance(name, str) or not name.strip() or len(name) > 256:
            raise GraphError(400, "BadRequest", "The 'displayName' property must be a non-empty string.")
        changes["displayName"] = name
    readonly = {"@odata.type", "id", "createdDateTime", "modifiedDateTime", "displayName"}
    if otype == IP_TYPE:
        _reject_unknown(body, readonly | {"isTrusted", "ipRanges"}, otype)
        if "isTrusted" in body:
            if not isinstance(body["isTrusted"], bool):
                raise GraphError(400, "BadRequest", "The 'isTrusted' property must be a boolean.")
            changes["isTrusted"] = body["isTrusted"]
        if "ipRanges" in body:
            changes["ipRanges"] = validate_ranges(body["ipRanges"])
    else:
        allowed = readonly | {"countriesAndRegions", "includeUnknownCountriesAndRegions", "countryLookupMethod"}
        _reject_unknown(body, allowed, otype)
        for k in allowed - readonly:
            if k in body:
                changes[k] = body[k]
    obj.update(changes)
    obj["modifiedDateTime"] = graph_time(now)
    if "ipRanges" in changes:
        return [r["cidrAddress"] for r in changes["ipRanges"]]
    return None


def tenant_segment_kind(segment: str) -> str:
    """'guid', 'domain' or 'malformed' for a tenant path segment."""
    if GUID_RE.match(segment):
        return "guid"
    if _DNS_RE.match(segment):
        return "domain"
    return "malformed"
