"""The ``config`` check: identifiers, the credential (a secret's Value, not its
Secret ID; a client certificate's validity) and the expected roots file."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from entragate.config import Config, looks_like_secret_id
from entragate.doctor.causes import Cause
from entragate.doctor.certinfo import display_name
from entragate.doctor.checks.base import FAIL, PASS, WARN, CheckResult
from entragate.doctor.roots import load_pem_certificates
from entragate.errors import Code

CERT_WARN_DAYS = 30


def _load_credential_certificate(path: Path, password: str | None) -> x509.Certificate:
    data = path.read_bytes()
    if path.suffix.lower() in (".pfx", ".p12") or not data.lstrip().startswith(b"-----"):
        _key, cert, _extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password else None
        )
        if cert is None:
            raise ValueError("no certificate in the PFX file")
        return cert
    certs = load_pem_certificates(data)
    if not certs:
        raise ValueError("no certificate in the PEM file")
    return certs[0]


def check_config(config: Config, *, now: datetime, expected_roots_error: str | None) -> CheckResult:
    causes: list[Cause] = []
    fix: list[str] = []
    warn_causes: list[Cause] = []
    portal = "Entra admin center > App registrations > (your app)"
    if not config.tenant_id:
        causes.append(Cause("missing_value", "tenant_id is not set (the Directory (tenant) ID)."))
        fix.append('tenant_id = "<Directory (tenant) ID from the app\'s Overview page>"')
    if not config.client_id:
        causes.append(Cause("missing_value", "client_id is not set (the Application (client) ID)."))
        fix.append('client_id = "<Application (client) ID from the app\'s Overview page>"')
    if config.client_secret is None and config.client_certificate is None:
        causes.append(
            Cause(
                "missing_value",
                "No credential: set client_secret (or client_secret_file) or client_certificate.",
            )
        )
        fix.append("client_secret_file = \"/etc/entragate/client-secret\"   (or client_certificate = \"...pem\")")
    secret = config.client_secret
    if secret is not None:
        value = secret.reveal()
        if looks_like_secret_id(secret):
            causes.append(
                Cause(
                    "secret_id_not_value",
                    "client_secret is shaped like a GUID: that is the secret's *Secret ID*, not its "
                    "Value. Entra rejects it (AADSTS7000215).",
                )
            )
            fix.extend(
                [
                    f"{portal} > Certificates & secrets > New client secret",
                    "copy the Value column at once (it is shown only once), not the Secret ID",
                    "put it in client_secret_file (or ENTRAGATE_CLIENT_SECRET) and rerun entragate doctor",
                ]
            )
        if value != value.strip() or any(ch in value for ch in "\r\n\t"):
            causes.append(
                Cause(
                    "stray_whitespace",
                    "client_secret has leading/trailing whitespace or a line break (often from "
                    "copy-and-paste or `echo` into the secret file); Entra would reject it.",
                )
            )
            fix.append("rewrite the secret without whitespace, e.g. printf '%s' 'VALUE' > /etc/entragate/client-secret")
        elif len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            warn_causes.append(
                Cause(
                    "quoted_secret",
                    "client_secret starts and ends with a quote character: the quotes are probably "
                    "part of the value by mistake (environment files do not strip them).",
                )
            )
    for key in ("tenant_id", "client_id"):
        raw = getattr(config, key)
        if raw and (raw != raw.strip() or " " in raw):
            causes.append(Cause("stray_whitespace", f"{key} contains whitespace."))
    if config.client_certificate is not None:
        password = config.client_certificate_password
        try:
            cert = _load_credential_certificate(
                Path(config.client_certificate), password.reveal() if password else None
            )
        except (OSError, ValueError) as exc:
            causes.append(
                Cause(
                    "certificate_unreadable",
                    f"client_certificate {config.client_certificate} cannot be loaded "
                    f"({type(exc).__name__}); it must be a PEM with its key, or a PFX with "
                    "client_certificate_password.",
                )
            )
        else:
            subject = display_name(cert.subject)
            if now > cert.not_valid_after_utc:
                causes.append(
                    Cause(
                        "certificate_expired",
                        f"The client certificate '{subject}' expired on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d}; Entra refuses assertions signed with it.",
                    )
                )
                fix.extend(
                    [
                        "create a new certificate, e.g. openssl req -x509 -newkey rsa:2048 -nodes -days 365 "
                        "-subj /CN=entragate -keyout key.pem -out cert.pem && cat cert.pem key.pem > entragate.pem",
                        f"upload cert.pem in {portal} > Certificates & secrets > Certificates, "
                        "then point client_certificate at entragate.pem",
                    ]
                )
            elif now < cert.not_valid_before_utc:
                causes.append(
                    Cause(
                        "certificate_not_yet_valid",
                        f"The client certificate '{subject}' is not valid until "
                        f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check this host's clock).",
                    )
                )
            else:
                left = (cert.not_valid_after_utc - now).total_seconds() / 86400
                if left < CERT_WARN_DAYS:
                    warn_causes.append(
                        Cause(
                            "certificate_expiring",
                            f"The client certificate '{subject}' expires in {left:.0f} days "
                            f"({cert.not_valid_after_utc:%Y-%m-%d}); upload its successor to the app "
                            "registration before then.",
                        )
                    )
    if expected_roots_error:
        warn_causes.append(Cause("expected_roots_unreadable", expected_roots_error))
    if causes:
        return CheckResult(
            "config",
            FAIL,
            "; ".join(c.summary for c in causes[:3]),
            code=Code.ENTRA001,
            causes=causes + warn_causes,
            fix=fix,
        )
    credential = "certificate" if config.client_certificate is not None else "client secret"
    acls = ", ".join(config.acls) or "none"
    summary = (
        f"tenant {config.tenant_id}, client {config.client_id}, {credential} credential, "
        f"cloud {config.cloud} ({config.login_host}, {config.graph_host}), acls: {acls}"
    )
    if warn_causes:
        return CheckResult("config", WARN, "; ".join(c.summary for c in warn_causes), causes=warn_causes)
    return CheckResult("config", PASS, summary)


def load_expected_roots(config: Config) -> tuple[list[x509.Certificate], str | None]:
    """The certificates of ``expected_roots``, or the reason they cannot be read."""
    if config.expected_roots is None:
        return [], None
    path = Path(config.expected_roots)
    try:
        certs = load_pem_certificates(path.read_bytes())
    except OSError as exc:
        return [], f"expected_roots {path} cannot be read: {exc.strerror or exc}"
    except ValueError:
        return [], f"expected_roots {path} is not a PEM bundle of certificates"
    return certs, None
