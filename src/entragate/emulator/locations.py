"""Named-location objects as Graph stores them: POST and PATCH bodies validated, with
Microsoft's limits (ranges per location, locations per tenant, prefix lengths)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Iterable
from typing import Any

from ._http import GraphError

IP_TYPE = "#microsoft.graph.ipNamedLocation"
COUNTRY_TYPE = "#microsoft.graph.countryNamedLocation"
#: Made by Global Secure Access, never through POST; listed with the others.
COMPLIANT_NETWORK_TYPE = "#microsoft.graph.compliantNetworkNamedLocation"
V4_TYPE = "#microsoft.graph.iPv4CidrRange"
V6_TYPE = "#microsoft.graph.iPv6CidrRange"
MAX_LOCATIONS = 195
MAX_RANGES = 2000
MIN_PREFIX = 9  # Microsoft: IPv4 CIDR masks greater than /8


def graph_time(t: float) -> str:
    """Graph's timestamp form: ``2024-05-06T07:08:09.1234567Z``."""
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond:06d}0Z"


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
