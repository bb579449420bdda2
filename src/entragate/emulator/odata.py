"""The OData pieces of Graph's named-location listing: ``$filter``, ``$skiptoken``, ``$select``."""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

from ._http import GraphError

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
