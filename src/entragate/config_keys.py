"""The configuration keys: one table that validation, the reference and the example share.

``config.py`` takes the set of known keys of each table from here (an unknown key is
refused with a did-you-mean); ``docs/configuration.md`` and
``packaging/entragate.example.toml`` are generated from it (``make docs``, see
``entragate.docgen``). Defaults are not repeated here: the reference reads them from
the configuration dataclasses, where validation takes them from.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One configuration key: ``table`` is "" (top level), "agent" or "acl"."""

    table: str
    name: str
    type: str
    description: str
    example: str  # a TOML value for the example file
    default: str | None = None  # shown in place of the dataclass default (None: read it)
    secret: bool = False

    @property
    def dotted(self) -> str:
        return {"": self.name, "agent": f"agent.{self.name}", "acl": f"acl.NAME.{self.name}"}[
            self.table
        ]

    @property
    def env(self) -> str | None:
        """``ENTRAGATE_<KEY>``: top-level and ``[agent]`` keys only (ACLs: ``ENTRAGATE_ACLS``)."""
        return None if self.table == "acl" else f"ENTRAGATE_{self.name.upper()}"


KEYS: tuple[Key, ...] = (
    # --- the app registration (docs/tenant-setup.md)
    Key("", "tenant_id", "string", "Directory (tenant) ID, a GUID, or a domain such as "
        "contoso.onmicrosoft.com. Required.", '"4a6f1c2e-8b5d-4e3f-9a1b-2c3d4e5f6a7b"', "(none)"),
    Key("", "client_id", "string", "Application (client) ID of the app registration. Required.",
        '"0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"', "(none)"),
    Key("", "client_secret", "string", "The client secret's Value (not its Secret ID). Prefer "
        "client_secret_file or a certificate; never both a secret and a certificate.",
        '"..."', "(none)", secret=True),
    Key("", "client_secret_file", "path", "File holding the client secret (trailing newline "
        "ignored); must be readable by the agent and by no one else.",
        '"/etc/entragate/client-secret"', "(none)", secret=True),
    Key("", "client_certificate", "path", "Certificate credential (recommended): a PEM file "
        "holding the private key and the certificate, or a PFX/PKCS#12 file.",
        '"/etc/entragate/app.pem"', "(none)", secret=True),
    Key("", "client_certificate_password", "string", "Password of the PFX file, or of an "
        "encrypted PEM private key.", '"..."', "(none)", secret=True),
    # --- where Microsoft is
    Key("", "cloud", "string", "National cloud: global, usgov (GCC High), usgov-dod or china "
        "(21Vianet). Sets login_host and graph_host.", '"global"'),
    Key("", "login_host", "string", "Token endpoint host, overriding the cloud's.",
        '"login.microsoftonline.com"', "the cloud's"),
    Key("", "graph_host", "string", "Microsoft Graph host, overriding the cloud's.",
        '"graph.microsoft.com"', "the cloud's"),
    Key("", "ca_bundle", "path", "PEM file trusted in place of the system store: the fix for a "
        "TLS-inspecting proxy. Wins over REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and SSL_CERT_FILE. "
        "There is no switch that turns verification off.", '"/etc/entragate/corp-ca.pem"',
        "the system store"),
    Key("", "expected_roots", "path", "PEM file of further roots the doctor counts as the "
        "endpoints' own publisher (private deployments, the emulator).",
        '"/etc/entragate/extra-roots.pem"', "(none)"),
    Key("", "proxy", "string", "HTTPS proxy URL; HTTPS_PROXY / NO_PROXY from the environment "
        "are honoured too.", '"http://proxy.example:3128"', "HTTPS_PROXY"),
    Key("", "connect_to", "list of strings", "curl's --connect-to: HOST1:PORT1:HOST2:PORT2 "
        "entries; connect to HOST2:PORT2 while SNI, Host and verification use HOST1.",
        '["login.microsoftonline.com:443:127.0.0.1:8443"]', "[]"),
    Key("", "timeout", "number", "Seconds for connecting and for each response from Microsoft.",
        "10"),
    # --- the agent
    Key("agent", "listen", "HOST:PORT", "Where the HTTP API listens (loopback unless TLS is set "
        "up).", '"127.0.0.1:8787"'),
    Key("agent", "api_token", "string", "The API's bearer token. Prefer api_token_file.",
        '"..."', "(generated)", secret=True),
    Key("agent", "api_token_file", "path", "File holding the API token; refused when others "
        "can read it. Without either key the agent generates one, 0600, beside the store.",
        '"/etc/entragate/api-token"', "api-token beside the store", secret=True),
    Key("agent", "store", "URL", "Grant store: sqlite:///PATH (one host) or postgresql://... "
        "(several agents, one writer).", '"sqlite:///var/lib/entragate/grants.db"'),
    Key("agent", "rate", "number", "Graph requests per second per tenant (Microsoft allows "
        "about 1 for Conditional Access, shared by every app).", "1"),
    Key("agent", "verify_interval", "number", "Seconds between full reads of each location to "
        "repair drift (hand edits in the portal).", "300"),
    Key("agent", "max_ttl", "integer", "Longest grant accepted, in seconds.", "604800"),
    Key("agent", "script_ttl", "integer", "Safety expiry, in seconds, of grants made by "
        "`entragate script add` (Knocknoc), in case the `del` never comes.", "43200"),
    Key("agent", "tls_cert", "path", "PEM certificate (chain) for serving the API over TLS; "
        "required, with tls_key, when listen is not a loopback address.",
        '"/etc/entragate/api.pem"', "(none)"),
    Key("agent", "tls_key", "path", "PEM private key of tls_cert; readable by the agent only.",
        '"/etc/entragate/api.key"', "(none)", secret=True),
    Key("agent", "placeholder", "CIDR", "The range a location holds while nothing is granted "
        "(Graph refuses an empty list); never a routable address.", '"192.0.2.255/32"'),
    # --- one table per access list
    Key("acl", "location", "string", "Display name (case-insensitive) or id of the IP named "
        "location. An id that does not exist is ENTRA006, never created.",
        '"Entragate staff"', "the ACL's name"),
    Key("acl", "trusted", "bool", "Mark the location trusted when entragate creates it.",
        "false"),
    Key("acl", "create", "bool", "Create the location when no location has that name (never "
        "from an id). Off by default, so a typo in a name cannot create an unused location.", "true"),
    Key("acl", "static", "list of strings", "Ranges always present in the location.",
        '["198.51.100.0/24"]', "[]"),
    Key("acl", "max_ranges", "integer", "Ranges per location, at most Microsoft's 2000.",
        "2000"),
    Key("acl", "max_locations", "integer", "Locations (shards) the ACL may spread over: NAME, "
        "NAME (2), ...; at most 195 per tenant.", "1"),
    Key("acl", "revoke_sessions", "bool", "When a user's last grant in this ACL ends (revoke, "
        "expiry, flush), revoke the user's sign-in sessions (Graph revokeSignInSessions, needs "
        "User.RevokeSessions.All), so tokens issued while the grant was active stop working. "
        "Each grant's user must then be a UPN or an object id.", "false"),
)


def table_keys(table: str) -> tuple[str, ...]:
    return tuple(k.name for k in KEYS if k.table == table)


def did_you_mean(name: str, table: str) -> str:
    """`` (did you mean 'x'?)`` for the closest known key of ``table``, or ``""``."""
    known = list(table_keys(table)) + (["agent", "acl"] if table == "" else [])
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
