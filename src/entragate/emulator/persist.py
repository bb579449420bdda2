"""``entragate emulator --state DIR``: the tenants survive a restart.

Tenants, app registrations (secrets, certificates, roles), named locations and
Conditional Access policies are written to ``DIR/tenants.json`` whenever they change
(the serving loop looks twice a second) and when the emulator stops; the root CA
already lives in ``DIR``. The file holds the emulated apps' secrets: it is written
0600. Counters, request logs and faults are not kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .state import App, Tenant, TenantState

FILE_NAME = "tenants.json"
FORMAT = 1


def snapshot(state: TenantState) -> dict[str, Any]:
    with state.lock:
        tenants = [
            {
                "id": t.id,
                "cloud": t.cloud,
                "domain": t.domain,
                "apps": [
                    {
                        "client_id": a.client_id,
                        "secret": a.secret,
                        "secret_id": a.secret_id,
                        "secret_expired": a.secret_expired,
                        "certificates": [
                            c.public_bytes(serialization.Encoding.PEM).decode() for c in a.certificates
                        ],
                        "roles": sorted(a.roles),
                        "object_id": a.object_id,
                    }
                    for a in t.apps.values()
                ],
                "locations": list(t.locations.values()),
                "policies": list(t.policies.values()),
            }
            for t in state.all_tenants()
        ]
        return json.loads(json.dumps({"format": FORMAT, "tenants": tenants}))


def save(state: TenantState, directory: Path, data: dict[str, Any] | None = None) -> None:
    """Write the tenants atomically (a crash leaves the old file or the new one)."""
    path = directory / FILE_NAME
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data if data is not None else snapshot(state), out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def load(state: TenantState, directory: Path) -> bool:
    """Put the saved tenants into ``state``; False when there is no saved file."""
    path = directory / FILE_NAME
    if not path.exists():
        return False
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} has format {data.get('format')!r}; this emulator reads {FORMAT}")
    for item in data["tenants"]:
        tenant = Tenant(item["id"], item["cloud"], item["domain"])
        for a in item["apps"]:
            certificates = [x509.load_pem_x509_certificate(pem.encode()) for pem in a["certificates"]]
            tenant.apps[a["client_id"]] = App(
                a["client_id"], a["secret"], a["secret_id"], a["secret_expired"], certificates,
                set(a["roles"]), a["object_id"],
            )
        tenant.locations = {loc["id"]: loc for loc in item["locations"]}
        tenant.policies = {p["id"]: p for p in item["policies"]}
        state.put_tenant(tenant)
    return True
