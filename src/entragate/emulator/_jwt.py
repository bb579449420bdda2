"""Minimal JWS (compact serialisation) signing and verification with ``cryptography``."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import Certificate


class JwtError(ValueError):
    """The token is malformed (not three base64url JSON parts)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as e:
        raise JwtError("bad base64url") from e


def sign_rs256(claims: dict[str, Any], key: rsa.RSAPrivateKey, headers: dict[str, Any]) -> str:
    header = {"typ": "JWT", "alg": "RS256", **headers}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(sig)


def parse(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Split a compact JWS into (header, claims, signing_input, signature) without verifying."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtError("a JWT has three parts")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise JwtError("JWT parts are not JSON") from e
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JwtError("JWT parts are not JSON objects")
    return header, claims, (parts[0] + "." + parts[1]).encode("ascii"), b64url_decode(parts[2])


_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}


def verify(alg: str, public_key: Any, signing_input: bytes, signature: bytes) -> bool:
    """Verify a JWS signature for RS*/PS*/ES* algorithms; False on any mismatch."""
    if len(alg) != 5 or alg[2:] not in _HASHES:
        return False
    digest = _HASHES[alg[2:]]()
    try:
        if alg.startswith("RS") and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signing_input, padding.PKCS1v15(), digest)
        elif alg.startswith("PS") and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature,
                signing_input,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO),
                digest,
            )
        elif alg.startswith("ES") and isinstance(public_key, ec.EllipticCurvePublicKey):
            half = len(signature) // 2
            der = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
            public_key.verify(der, signing_input, ec.ECDSA(digest))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def thumbprints(cert: Certificate) -> tuple[str, str]:
    """(x5t, x5t#S256) header values for ``cert``: base64url of its SHA-1 / SHA-256 digest."""
    return b64url(cert.fingerprint(hashes.SHA1())), b64url(cert.fingerprint(hashes.SHA256()))  # noqa: S303
