"""The certificate credential: read once at load (to check it) and by msal's token provider."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12


class CredentialError(ValueError):
    """The certificate file cannot serve as a credential; the message says why, in one line."""


def load_certificate_credential(path: Path, password: str | None) -> dict[str, str]:
    """msal's certificate credential from a PEM (certificate + key) or a PFX file."""
    data = path.read_bytes()
    secret = password.encode() if password else None
    if path.suffix.lower() in (".pfx", ".p12") or not data.lstrip().startswith(b"-----"):
        try:
            key, cert, _ = pkcs12.load_key_and_certificates(data, secret)
        except ValueError:
            raise CredentialError(
                "is not a PFX that client_certificate_password opens "
                "(wrong or missing password, or not PKCS#12)"
            ) from None
        if key is None or cert is None:
            raise CredentialError("holds no private key and certificate")
    else:
        if b"PRIVATE KEY-----" not in data:
            raise CredentialError(
                "holds no private key: the PEM needs the key and the certificate "
                "(cat app.key app.crt > app.pem)"
            )
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise CredentialError("holds no certificate: add it after the key")
        try:
            key = serialization.load_pem_private_key(data, secret)
        except TypeError:
            raise CredentialError(
                "holds an encrypted private key: set client_certificate_password"
            ) from None
        except ValueError:
            raise CredentialError(
                "holds a private key that cannot be read (wrong client_certificate_password?)"
            ) from None
        cert = x509.load_pem_x509_certificate(data)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "private_key": key_pem,
        "thumbprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - x5t is SHA-1 by definition
        "public_certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }
