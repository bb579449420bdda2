"""Certificate credentials written to files: a PEM (key + certificate) and a PFX."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.helpers.emulator import make_app_certificate


def self_signed_credential(tmp_path: Path, name: str = "entragate-test") -> tuple[bytes, Path, Path]:
    """(cert_pem, pem_path, pfx_path); the PFX's password is ``pfx-pass``."""
    key, cert, key_pem, cert_pem = make_app_certificate(name)
    pem_path = tmp_path / f"{name}.pem"
    pem_path.write_bytes(key_pem + cert_pem)
    pfx_path = tmp_path / f"{name}.pfx"
    pfx_path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"entragate", key, cert, None, serialization.BestAvailableEncryption(b"pfx-pass")
        )
    )
    return cert_pem, pem_path, pfx_path
