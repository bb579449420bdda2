"""The emulated STS's JWTs, with PyJWT: the access tokens it signs (Graph verifies them)
and the client assertions apps sign with a registered certificate.

PyJWT checks the signatures; the claims are checked here, against the emulated clock
(which may be skewed on purpose), so that each failure gets Entra's AADSTS code.
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import urllib.parse
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.utils import base64url_encode, to_base64url_uint

from ._http import TokenError
from .pki import new_key
from .state import App, Tenant

if TYPE_CHECKING:
    from jwt.types import Options

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_TOLERANCE = 300  # seconds of skew the token endpoint forgives on client assertions
ACCESS_TOKEN_ALGORITHM = "RS256"
# What a certificate's key can sign an assertion with (msal: PS256 or RS256).
_ALGORITHMS_BY_KEY: tuple[tuple[type, list[str]], ...] = (
    (rsa.RSAPublicKey, ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]),
    (ec.EllipticCurvePublicKey, ["ES256", "ES384", "ES512"]),
)
# PyJWT verifies the signature only: the claims are checked here, at the emulated time.
_SIGNATURE_ONLY: Options = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
_UNVERIFIED: Options = {"verify_signature": False}


class MalformedJwt(ValueError):
    """Not a compact JWT (three base64url parts, JSON object header and claims)."""


def parse_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of ``token`` without checking its signature."""
    try:
        decoded = jwt.decode_complete(token, options=_UNVERIFIED)
    except jwt.InvalidTokenError as e:
        raise MalformedJwt(str(e)) from None
    return decoded["header"], decoded["payload"]


def signature_valid(token: str, public_key: Any, algorithms: list[str]) -> bool:
    try:
        jwt.decode(token, public_key, algorithms=algorithms, options=_SIGNATURE_ONLY)
    except jwt.InvalidTokenError:
        return False
    return True


def b64url(data: bytes) -> str:
    return base64url_encode(data).decode("ascii")


@functools.cache
def _process_signing_key() -> rsa.RSAPrivateKey:
    # One per process: an RSA key takes a while to generate.
    key = new_key("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


class SigningKey:
    """The key the emulated STS signs access tokens with, published by its key id."""

    def __init__(self) -> None:
        self._key = _process_signing_key()
        self.kid = secrets.token_urlsafe(16)

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._key, algorithm=ACCESS_TOKEN_ALGORITHM, headers={"x5t": self.kid, "kid": self.kid}
        )

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this key signed, None when another key (or kid) signed it.

        Raises :class:`MalformedJwt` when ``token`` is not a JWT at all.
        """
        header, claims = parse_unverified(token)
        if header.get("kid") != self.kid:
            return None
        if not signature_valid(token, self._key.public_key(), [ACCESS_TOKEN_ALGORITHM]):
            return None
        return claims

    def jwks(self) -> dict[str, Any]:
        public = self._key.public_key().public_numbers()
        n, e = to_base64url_uint(public.n).decode(), to_base64url_uint(public.e).decode()
        return {"keys": [{"kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid, "n": n, "e": e}]}


# --------------------------------------------------------------------------- client assertions


def check_assertion(assertion: str, *, app: App, tenant: Tenant, host: str, now: float) -> None:
    """Accept a client assertion as Entra does, or raise its :class:`TokenError`."""
    try:
        header, claims = parse_unverified(assertion)
    except MalformedJwt:
        raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.") from None
    cert = _signing_certificate(header, app)
    if not signature_valid(assertion, cert.public_key(), _algorithms_for(cert)):
        raise TokenError(401, "invalid_client", 700027, "Client assertion failed signature validation.")
    if cert.not_valid_after_utc.timestamp() < now:
        raise TokenError(
            401, "invalid_client", 700027, "Client assertion contains an invalid signature. [Reason - The key used is expired.]"
        )
    if claims.get("iss") != app.client_id and str(claims.get("iss", "")).lower() != app.client_id:
        raise TokenError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
    if str(claims.get("sub", "")).lower() != app.client_id:
        raise TokenError(401, "invalid_client", 700021, "Client assertion application identifier doesn't match 'client_id' parameter.")
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if not any(_audience_ok(host, tenant, a) for a in auds):
        raise TokenError(401, "invalid_client", 50012, "Client assertion audience claim does not match Realm issuer.")
    exp = claims.get("exp")
    nbf = claims.get("nbf", claims.get("iat"))
    if not isinstance(exp, int | float) or (nbf is not None and not isinstance(nbf, int | float)):
        raise TokenError(400, "invalid_request", 50027, "JWT token is invalid or malformed.")
    if exp + CLOCK_TOLERANCE < now or (nbf is not None and nbf - CLOCK_TOLERANCE > now):
        start = _iso(nbf) if nbf is not None else "(unset)"
        raise TokenError(
            401,
            "invalid_client",
            700024,
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, "
            f"assertion valid from {start}, expiry time of assertion {_iso(exp)}. Review the "
            "documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
        )


def _signing_certificate(header: dict[str, Any], app: App) -> x509.Certificate:
    """The registered certificate the assertion's ``x5t#S256`` or ``x5t`` names."""
    # msal pads its base64url thumbprints, RFC 7515 does not: accept both.
    wanted_sha1 = str(header.get("x5t") or "").rstrip("=")
    wanted_sha256 = str(header.get("x5t#S256") or "").rstrip("=")
    for cert in app.certificates:
        sha1 = b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - x5t is SHA-1 by definition
        sha256 = b64url(cert.fingerprint(hashes.SHA256()))
        if (wanted_sha256 and wanted_sha256 == sha256) or (wanted_sha1 and wanted_sha1 == sha1):
            return cert
    shown = wanted_sha256 or wanted_sha1 or ""
    raise TokenError(
        401,
        "invalid_client",
        700027,
        "The certificate with identifier used to sign the client assertion is not registered on "
        f"application. [Reason - The key was not found., Thumbprint of key used by client: '{shown}', "
        "Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys "
        f"for app Id '{app.client_id}'.]",
    )


def _algorithms_for(cert: x509.Certificate) -> list[str]:
    public_key = cert.public_key()
    return next((algs for kind, algs in _ALGORITHMS_BY_KEY if isinstance(public_key, kind)), [])


def _audience_ok(host: str, tenant: Tenant, aud: Any) -> bool:
    if not isinstance(aud, str):
        return False
    u = urllib.parse.urlsplit(aud)
    if u.scheme != "https" or (u.hostname or "").lower() != host:
        return False
    segs = [s for s in u.path.split("/") if s]
    if not segs or segs[0].lower() not in (tenant.id, tenant.domain):
        return False
    return "/".join(segs[1:]).lower() in ("oauth2/v2.0/token", "oauth2/token", "v2.0")


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
