"""Microsoft's TLS roots, recognised by key (docs/design.md#doctor).

The endpoints entragate talks to (login.microsoftonline.*, graph.microsoft.* …)
chain to a small set of public roots.  Intermediates rotate, so the doctor
never pins them: a presented chain "leads to a publisher root" when its top
certificate *is* one of these roots (same SubjectPublicKeyInfo) or is *signed
by* one (the signature verifies with the root's public key).  Names are never
trusted on their own: a TLS-inspection proxy can forge any name, not a key.

Each root is embedded as the SHA-256 of its DER SubjectPublicKeyInfo (its
identity) together with the SPKI itself (public data, needed to verify the
signature of an intermediate when the trust store in use cannot supply the
root, e.g. when the CA bundle is missing).  ``tests/test_doctor_roots.py``
recomputes the hashes from the public certificates in ``tests/data/certs``.

Since Microsoft's 2025–2026 rotation its endpoints chain to Microsoft TLS RSA
Root G2 and Microsoft TLS ECC Root G2, each cross-signed by a DigiCert root
(G2 and G3).  Only the RSA G2 root is embedded: no public text copy of the ECC G2
root was found to take its key from (``tests/data/certs/README.md``).  An ECC G2
chain that carries its cross certificate still leads to DigiCert Global Root G3.  DigiCert Global Root CA (G1) and Baltimore CyberTrust Root are
*legacy*: still recognised (old chains lead to them), but a store that holds
them and not the current roots is outdated (docs/design.md#doctor).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes


@dataclass(frozen=True)
class PublisherRoot:
    """One of Microsoft's roots: its name (for messages) and its key."""

    name: str
    spki_sha256: str
    spki_der_b64: str
    #: No longer what Microsoft's endpoints chain to; browsers and certifi dropped it.
    legacy: bool = False
    #: The older root that cross-signed this one, so that stores without it still verify
    #: a chain that includes the cross certificate.
    cross_signed_by: str | None = None

    @cached_property
    def spki_der(self) -> bytes:
        der = base64.b64decode(self.spki_der_b64)
        if hashlib.sha256(der).hexdigest() != self.spki_sha256:  # pragma: no cover - constant integrity
            raise ValueError(f"embedded key of {self.name} does not match its hash")
        return der

    @cached_property
    def public_key(self) -> CertificatePublicKeyTypes:
        key = serialization.load_der_public_key(self.spki_der)
        return key  # type: ignore[return-value]


# SHA-256 of the DER SubjectPublicKeyInfo of each root, computed from the public
# certificates listed in tests/data/certs/README.md.
MICROSOFT_ROOTS: tuple[PublisherRoot, ...] = (
    PublisherRoot(
        name='Microsoft TLS RSA Root G2',
        cross_signed_by='DigiCert Global Root G2',
        spki_sha256='4b03c9966c863b2c008a95a5ed9254070448c7b219d283102f6a6c5b6e8e2acd',
        spki_der_b64=(
            'MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEA3+qLn0fhKBBxr0HWGduSV95rq+Yu3q06'
            'YIO3E5isW7kyC3vrn3Ina11Aq74YBpOyDdIS7bh09X8v6qgXlPYzFleK3iB8Id232qzeTmSwWs1L'
            'dfPvAmRN7VLao48E6JH41/s/Gf1ORTle6CnD1vJnr7MAlMGN4fBKGJg5+sAJhDNBBQMFq/R14VOl'
            'IZJcREzmYFekkAKXx9XYkwQySu2FUe3WxbqgPzaKL29MOagEaSKEO3UU99k+tKnQB0E4gX5GSB3o'
            'GeZwuKCqGN1yv359tWxOGXARhAQTgdRi/Zxr8Rzd/+yn4ObHjTFLv/JrM8zRjLb+sRujSqhfDn8x'
            'djg/B0dsAaispRTagrBfH2y8iRrAEirLe5cfKC4xFopTTHVm+X0B1sJgqmWPMZ5yy8ybLeVEGZNX'
            'q26OwtkuZbByLeehw6F+SR1ZZ9YJ1BgSbcCVRXjJ8WBq5PbuBiQ7c0paEcI+l2HAeO7vE6cw4ko4'
            'Le5YFxMgtzYq3wsytMI4sZHdErBFtnzAsR1ioZ3dcRIVlgGdCgn1sd2z2eA4QjT2abbDrxZz/tRD'
            '+EPkWPlPs/Ps1j2UOkA4FasMhtBkzhpj6ISUVQlatgS20T6aFcdkEYDQG4IOTf9FnrJlByUf25rI'
            'xuzWW4VQBJ8cy10ggmeeeeLf6PLob8QgcjCG5Z11JzUCAwEAAQ=='
        ),
    ),
    PublisherRoot(
        name='DigiCert Global Root G2',
        spki_sha256='8bb593a93be1d0e8a822bb887c547890c3e706aad2dab76254f97fb36b82fc26',
        spki_der_b64=(
            'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuzfNNNx7a8myaJCtSnX/RrohCgiN9RlU'
            'yfuI2/Ou8jqJkTx65qsGGmvPrC3oXgkkRLpimn7Wo6h+4FR1IAWsULecYxpsMNzaHxmx1x7e/dfg'
            'y5SDN67sH0NO3Xss0r0upS/kqbitOtSZpLYl6ZtrAGCSYP9PIUkY92eQq2EGnI/yuum06ZIya7Xz'
            'V+hdG82MHauVBJVJ8zUtluNJbd134/tJS7SsVQepj5WztCO7TG1F8PapspUwtP1MVYwnSlcUfIKd'
            'zXOS0xZKBgyMUNGPHgm+F6HmIcr9g+UQvIOlCsRnKPZzFBQ9RnbDhxSJITRNrw9FDKZJobq7nMWx'
            'M4MphQIDAQAB'
        ),
    ),
    PublisherRoot(
        name='DigiCert Global Root CA',
        legacy=True,
        spki_sha256='aff988906dde12955d9bebbf928fdcc31cce328d5b9384f21c8941ca26e20391',
        spki_der_b64=(
            'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4jvhEXLeqKTTo1eqUKKPC3eQyaKl7hLO'
            'llsBCSDMAZOnTjC3U/dDxGkAV53ijSLdhwZAAIEJzs4bg7/fzTtxRuLWZscFs3YnFo97nh6Vfe63'
            'SKMI2tavegw5BmV/Sl0fvBf4q77uKNd0f3p4mVmFaG5cIzJLv07A6Fpt43C/dxC//AH2hdmoRBBY'
            'Mql1GNXRor5H4idq9Joz+EkIYIvUX7Q6hL+hqkpMfT7PT19sdl6gSzeRntwi5m3OFBqOasv+zbMU'
            'ZBfHWymeMr/y7vrTC0LUq7dBMtoM1O/4gdW7jVg/tRvoSSiicNoxBN33shbyTApOB6jtSj1etX+j'
            'kMOvJwIDAQAB'
        ),
    ),
    PublisherRoot(
        name='DigiCert Global Root G3',
        spki_sha256='b94c198300cec5c057ad0727b70bbe91816992256439a7b32f4598119dda9c97',
        spki_der_b64=(
            'MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE3afZu4q4C/sLfyHS8L6+c/MzXRq8NOrexpu80JX28MzQ'
            'C7phW1FGfp4tn+6OYwwX7Adw9c+ELkCDnOg/QW07rdOkFFk2eJ0DQ+4QE2xy3q6Ip6FrtUPOZ9wj'
            '/wMco+I+'
        ),
    ),
    PublisherRoot(
        name='Microsoft RSA Root Certificate Authority 2017',
        spki_sha256='b2f7298b52bf2c3cac4ddfe72de4d682ac58957595982f2b62301af597c699c5',
        spki_der_b64=(
            'MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAylu+lDOMKZWRFgqVvUdiwYnzmTbfRpDJ'
            'pe14am9HkWj4J2dQMx2hpvvg5UOjhAJXAV2cSECCUxC8v8c7aJC2gi3l9GXQzG0ZzJX5e6xKlK0O'
            '3ktDHYcHkhOQgINkNTkE/OXpbLO2H1CUOGVQXBdGubaFtRy1F+jWRZ3YsiawysRwSq5gpN2z2ez8'
            'O9VXcrw/yMmy3ktr+CNsA8AFvZXHzXM7ZoBk4xqsLvlHBfIGtptz9XgzW8eh+ycqobSakYyR0zqC'
            'PnZAtM1SYVFwKD/FxVryyYxJuxRbTcj/Z01MEpat9f54qJeH1/1eIIDcoUsi+9SJrbrOR5dHVXuP'
            'RchnKISVHGgw7+9J4DV7ZOeYsJTaTYU7PlXEKK9X854T20Ynnx6iXkSDpKXK1ROzSz/E48LmhmGk'
            'UjC5eiBPbw84U8szDBMrj9aavSrILbEcfUtRykfRSCdyXYfr1UXmSGWdr1KQuluiGGVXEp9oudQV'
            'a5TEaSKY9DPg7flRjkFQyTRPdpCs/DjB2OF7uePjlOFGacsOClBrE7qsDzdatxK1kIEeVq5XIobZ'
            'ydLR11HjqzvGVf0eDtN0CtHaquppuJcoj0jEB/hSQzr0ylU1LLCmasCc+fKB4RJqwEXZZ7PO/yOi'
            'iQpU1BS5KqjX7PmrzSVYMnmPkFuYOcQIBsGsfw49AKUCAwEAAQ=='
        ),
    ),
    PublisherRoot(
        name='Microsoft ECC Root Certificate Authority 2017',
        spki_sha256='35f53ce1264611e03340fe37e1ec7d4cc986c5613dca70fd04aa44545f2daf28',
        spki_der_b64=(
            'MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE1Lw9AkJ1QRMjzYAEhgJRL2qogWILZcz2yp0eb0pmUaID'
            '2Z2R+rYWsYxu3nzN23mmL867znEv5aWrKOxjBGaZ+PrykxAF4YEoQuPGaPTmG4RgSomv7XkPO87x'
            '9kT1AXjA'
        ),
    ),
    PublisherRoot(
        name='Baltimore CyberTrust Root',
        legacy=True,
        spki_sha256='63d9af9b47b1064d49a10e7b7fd566dbc8caa399459bfc2829c571ad8c6ef34a',
        spki_der_b64=(
            'MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAowS7IquYPVfoJnKatXnUKeLh6JWAsbDj'
            'W44rKZpk36Fd7bAJBW3bKC7OYqJi/rSI2hLrOOshncBBKwFSe4h30xyPx7q5iLVqCedz6BFAp9HM'
            'ymKNLeWPC6ZQ0qhQwyjq9aslh4qalhypZ7g/DNX3+VITL8Ib1XBw8I/AEsoGy5rh2cozenfW+Oy5'
            '8WhEQkgT0sDCpK5eYP62pgX8tN0HWQLUWRiYY/WlY+CQDH1dsgZ684Xq69QDrl6EPl//Fe1pvPk5'
            'NnJ1z3dSTfPJkCy5PeXJI1M/HySYIVwHmSm9xjrs526GOmuXdGMzvWgYMfB4jXa//J6OXSqGp02Q'
            '3CcaOQIDAQAB'
        ),
    ),
)

#: name -> SPKI SHA-256 (hex), for quick reference and tests.
MICROSOFT_ROOT_SPKI_SHA256: dict[str, str] = {r.name: r.spki_sha256 for r in MICROSOFT_ROOTS}

_BY_HASH: dict[str, PublisherRoot] = {r.spki_sha256: r for r in MICROSOFT_ROOTS}
_BY_NAME: dict[str, PublisherRoot] = {r.name: r for r in MICROSOFT_ROOTS}

#: The roots Microsoft's endpoints chain to today; a store should hold every one.
CURRENT_ROOTS: tuple[PublisherRoot, ...] = tuple(r for r in MICROSOFT_ROOTS if not r.legacy)
LEGACY_ROOTS: tuple[PublisherRoot, ...] = tuple(r for r in MICROSOFT_ROOTS if r.legacy)


def spki_der(cert: x509.Certificate) -> bytes:
    """DER SubjectPublicKeyInfo of ``cert``."""
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_sha256(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's SubjectPublicKeyInfo (its key identity)."""
    return hashlib.sha256(spki_der(cert)).hexdigest()


def microsoft_root_named(name: str) -> PublisherRoot | None:
    """The Microsoft root called ``name`` (as in :data:`MICROSOFT_ROOTS`), if any."""
    return _BY_NAME.get(name)


def microsoft_root_for(cert: x509.Certificate) -> PublisherRoot | None:
    """The Microsoft root whose key ``cert`` carries, if any."""
    return _BY_HASH.get(spki_sha256(cert))


def signature_verifies(cert: x509.Certificate, key: CertificatePublicKeyTypes) -> bool:
    """True when ``cert``'s signature verifies with ``key`` (names are not consulted)."""
    try:
        hash_alg = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey):
            if hash_alg is None:
                return False
            params = cert.signature_algorithm_parameters
            pad = params if isinstance(params, padding.PSS | padding.PKCS1v15) else padding.PKCS1v15()
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if hash_alg is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_alg))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(key, dsa.DSAPublicKey):
            if hash_alg is None:
                return False
            key.verify(cert.signature, cert.tbs_certificate_bytes, hash_alg)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key verifies ``cert``'s signature."""
    try:
        key = issuer.public_key()
    except ValueError:
        return False
    return signature_verifies(cert, key)


def is_self_signed(cert: x509.Certificate) -> bool:
    """Subject equals issuer and the certificate's own key verifies its signature."""
    return cert.subject == cert.issuer and signed_by(cert, cert)


def _expected_hashes(expected_roots: Iterable[x509.Certificate]) -> set[str]:
    return {spki_sha256(c) for c in expected_roots}


def is_publisher_root(cert: x509.Certificate, expected_roots: Sequence[x509.Certificate] = ()) -> bool:
    """``cert`` carries the key of a Microsoft root or of one of ``expected_roots``."""
    h = spki_sha256(cert)
    return h in _BY_HASH or h in _expected_hashes(expected_roots)


def publisher_root_signing(
    cert: x509.Certificate, expected_roots: Sequence[x509.Certificate] = ()
) -> str | None:
    """Name of the publisher root whose key signed ``cert`` (None when none did)."""
    for root in MICROSOFT_ROOTS:
        if signature_verifies(cert, root.public_key):
            return root.name
    for exp in expected_roots:
        if signed_by(cert, exp):
            return exp.subject.rfc4514_string()
    return None


def publisher_root_name(
    cert: x509.Certificate, expected_roots: Sequence[x509.Certificate] = ()
) -> str | None:
    """Name of the publisher root ``cert`` is, or is signed by; None otherwise."""
    ms = microsoft_root_for(cert)
    if ms is not None:
        return ms.name
    h = spki_sha256(cert)
    for exp in expected_roots:
        if spki_sha256(exp) == h:
            return exp.subject.rfc4514_string()
    return publisher_root_signing(cert, expected_roots)


def leads_to_publisher_root(cert: x509.Certificate, expected_roots: Sequence[x509.Certificate] = ()) -> bool:
    """The (top) certificate is a publisher root by key or is signed by one."""
    return publisher_root_name(cert, expected_roots) is not None


def publisher_root_hashes(expected_roots: Sequence[x509.Certificate] = ()) -> set[str]:
    """SPKI hashes of every root that counts as the publisher's."""
    return set(_BY_HASH) | _expected_hashes(expected_roots)


def chain_path(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Follow issuers from the leaf through the presented certificates.

    Each step picks a presented certificate whose key verifies the current
    one's signature (not merely a matching name).  Stops at a self-signed
    certificate or when no presented certificate signs the current one.
    """
    if not certs:
        return []
    path = [certs[0]]
    remaining = list(certs[1:])
    while remaining:
        cur = path[-1]
        if is_self_signed(cur):
            break
        nxt = next((c for c in remaining if c.subject == cur.issuer and signed_by(cur, c)), None)
        if nxt is None:
            nxt = next((c for c in remaining if signed_by(cur, c)), None)
        if nxt is None:
            break
        path.append(nxt)
        remaining.remove(nxt)
    return path


def chain_leads_to_publisher_root(
    certs: Sequence[x509.Certificate], expected_roots: Sequence[x509.Certificate] = ()
) -> bool:
    """The presented chain's top (following signatures from the leaf) leads to a publisher root."""
    path = chain_path(certs)
    if not path:
        return False
    if any(is_publisher_root(c, expected_roots) for c in path):
        return True
    return publisher_root_signing(path[-1], expected_roots) is not None


def load_pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; raises ValueError when a block is malformed."""
    return list(x509.load_pem_x509_certificates(data))
