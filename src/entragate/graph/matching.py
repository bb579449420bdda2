"""Which named location an ``[acl]`` means (docs/design.md#grant-model).

Configuration must not be able to hit the wrong location: a ``location`` that
looks like an id names that location only, and a missing id is ENTRA006, never
"will be created".  Display names match case-insensitively, as the portal shows
them; two matches are ambiguous; a match that is not an IP location is refused
(the agent never touches country or compliant-network locations); and when
nothing matches, the closest existing IP location names are offered.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from entragate.errors import LocationProblem

if TYPE_CHECKING:
    from entragate.graph.client import NamedLocation

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_OPERATION = "find named location"


def is_location_id(text: str) -> bool:
    """``text`` has the shape of a named location's id (a GUID)."""
    return bool(_GUID.match(text.strip()))


def same_name(a: str, b: str) -> bool:
    """Display names as the portal compares them: case and surrounding spaces do not count."""
    return a.strip().casefold() == b.strip().casefold()


def closest_names(wanted: str, locations: Sequence[NamedLocation], limit: int = 3) -> list[str]:
    """The existing IP location names nearest to ``wanted`` (for "did you mean …")."""
    names = {loc.display_name.casefold(): loc.display_name for loc in locations if loc.is_ip}
    close = difflib.get_close_matches(wanted.strip().casefold(), list(names), n=limit, cutoff=0.6)
    return [names[c] for c in close]


def resolve_location(
    locations: Sequence[NamedLocation],
    wanted: str,
    *,
    create: bool,
    host: str,
    acl: str | None = None,
) -> NamedLocation | None:
    """The one IP location ``wanted`` (an id or a display name) means in ``locations``.

    None only when ``wanted`` is a name, nothing has it and ``create`` allows making it;
    every other miss raises :class:`LocationProblem` (ENTRA006).
    """
    where = f"acl {acl}: " if acl else ""
    if is_location_id(wanted):
        found = [loc for loc in locations if loc.id.lower() == wanted.strip().lower()]
        if not found:
            raise LocationProblem(
                f"{where}no named location has the id {wanted}",
                host=host,
                operation=_OPERATION,
                hint="an id is never created: copy the id from the portal, or configure the location by name",
                reason="missing",
            )
        return _only_ip(found[0], wanted, where, host)
    matches = [loc for loc in locations if same_name(loc.display_name, wanted)]
    ip_matches = [loc for loc in matches if loc.is_ip]
    if len(ip_matches) > 1:
        ids = ", ".join(loc.id for loc in ip_matches)
        raise LocationProblem(
            f"{where}{len(ip_matches)} named locations are called {wanted!r}: {ids}",
            host=host,
            operation=_OPERATION,
            hint="rename the duplicates in the portal, or set location to one of these ids",
            reason="ambiguous",
            ids=tuple(loc.id for loc in ip_matches),
        )
    if ip_matches:
        return ip_matches[0]
    if matches:
        return _only_ip(matches[0], wanted, where, host)
    if create:
        return None
    close = closest_names(wanted, locations)
    guess = f" (did you mean {', '.join(repr(n) for n in close)}?)" if close else ""
    raise LocationProblem(
        f"{where}no named location is called {wanted!r}{guess}",
        host=host,
        operation=_OPERATION,
        hint="fix the name, configure the location's id, or set `create = true` on the acl "
        "to have entragate create it",
        reason="missing",
        suggestions=tuple(close),
    )


def _only_ip(location: NamedLocation, wanted: str, where: str, host: str) -> NamedLocation:
    if not location.is_ip:
        kind = location.odata_type.rsplit(".", 1)[-1] or "non-IP"
        raise LocationProblem(
            f"{where}named location {wanted!r} is a {kind} location, not an IP ranges location: "
            "entragate never manages it",
            host=host,
            operation=_OPERATION,
            hint="point the acl at an IP ranges location",
            reason="not_ip",
        )
    return location
