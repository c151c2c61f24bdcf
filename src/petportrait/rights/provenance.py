"""Signed provenance: a C2PA manifest in every downloaded portrait, signed with the service's key.

The manifest says the image was created by a trained algorithm (digital source type
trainedAlgorithmicMedia), names the generator and the licence (id and verification URL). In development
a local CA and an ES256 signing certificate are made in data_dir/keys on first run (c2pa refuses a
self-signed signer); production must configure rights.signing_cert and rights.signing_key.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from petportrait import __version__
from petportrait.files import private_dir, private_file
from petportrait.settings import Settings

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
LICENCE_ASSERTION = "com.petportrait.licence"
_ORG = "petportrait (development)"


class SigningNotConfigured(RuntimeError):
    """Production without a configured signing certificate."""


@dataclass(frozen=True)
class SigningMaterial:
    """The PEM chain (signer first), its private key, and the roots verification trusts."""

    chain_pem: bytes
    key_pem: bytes
    anchors_pem: bytes
    development: bool


def keys_dir(settings: Settings) -> Path:
    """Where the development signing certificate lives."""
    return (settings.data_dir / "keys").resolve()


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_development_chain(*, now: datetime | None = None) -> tuple[bytes, bytes, bytes]:
    """A new local CA and an ES256 leaf it issued: (chain PEM, leaf key PEM, CA PEM).

    The CA's private key is not kept: nothing else can ever be issued under it.
    """
    now = now or datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("petportrait development CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("petportrait development signer"))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return leaf.public_bytes(pem) + ca_pem, key_pem, ca_pem


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def _development_material(settings: Settings) -> SigningMaterial:
    folder = keys_dir(settings)
    private_dir(folder)
    chain_path, key_path, ca_path = folder / "signer-chain.pem", folder / "signer-key.pem", folder / "ca.pem"
    with private_file(folder / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes starting at once make one certificate
        if not (chain_path.exists() and key_path.exists() and ca_path.exists()):
            chain, key, ca = make_development_chain()
            _write_private(key_path, key, 0o600)
            _write_private(ca_path, ca, 0o600)
            _write_private(chain_path, chain, 0o600)
        return SigningMaterial(
            chain_pem=chain_path.read_bytes(),
            key_pem=key_path.read_bytes(),
            anchors_pem=ca_path.read_bytes(),
            development=True,
        )


_CACHE: dict[tuple[str, str, str], SigningMaterial] = {}


def signing_material(settings: Settings) -> SigningMaterial:
    """The configured certificate, or in development and tests the one made in data_dir/keys."""
    rights = settings.rights
    cache_key = (str(rights.signing_cert), str(rights.signing_key), str(keys_dir(settings)))
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    if rights.signing_cert is not None and rights.signing_key is not None:
        chain = rights.signing_cert.read_bytes()
        anchors_path = rights.trust_anchors
        if anchors_path is not None:
            anchors = anchors_path.read_bytes()
        else:
            certs = x509.load_pem_x509_certificates(chain)
            anchors = certs[-1].public_bytes(serialization.Encoding.PEM)
        material = SigningMaterial(chain, rights.signing_key.read_bytes(), anchors, development=False)
    elif settings.environment == "production":
        raise SigningNotConfigured(
            "rights.signing_cert and rights.signing_key are not set: production signs downloads with a "
            "configured certificate (PETPORTRAIT__RIGHTS__SIGNING_CERT, PETPORTRAIT__RIGHTS__SIGNING_KEY)"
        )
    else:
        material = _development_material(settings)
    _CACHE[cache_key] = material
    return material


def manifest_definition(
    *, title: str, licence_id: str, verify_url: str, generator: str, content_sha256: str
) -> dict[str, Any]:
    """The manifest: created by a trained algorithm, by this generator, under this licence."""
    return {
        "claim_generator_info": [{"name": "petportrait", "version": __version__}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                            "softwareAgent": {"name": generator},
                        }
                    ]
                },
            },
            {
                "label": LICENCE_ASSERTION,
                "data": {
                    "licence_id": licence_id,
                    "verify_url": verify_url,
                    "content_sha256": content_sha256,
                    "rights": "exclusive licence to reproduce and display; not resold by petportrait",
                },
            },
        ],
    }


def sign_png(data: bytes, *, material: SigningMaterial, manifest: dict[str, Any]) -> bytes:
    """The PNG with the manifest embedded and signed."""
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", material.chain_pem, material.key_pem, None))
    context = c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
    out = io.BytesIO()
    try:
        with c2pa.Builder(manifest, context=context) as builder:
            builder.sign(signer, "image/png", io.BytesIO(data), out)
    finally:
        signer.close()
        context.close()
    return out.getvalue()


@dataclass
class Verification:
    """What reading a file's manifest found."""

    state: str  # "Trusted", "Valid", "Invalid", or "None" when no manifest
    manifest: dict[str, Any] | None
    failures: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.state == "Trusted" and not self.failures

    def licence(self) -> dict[str, Any] | None:
        for assertion in (self.manifest or {}).get("assertions", []):
            if assertion.get("label") == LICENCE_ASSERTION:
                data: dict[str, Any] = assertion.get("data", {})
                return data
        return None


def verify(data: bytes, *, anchors_pem: bytes, mime_type: str = "image/png") -> Verification:
    """Read and validate the manifest of a file, trusting `anchors_pem`."""
    settings = {
        "verify": {"verify_trust": True},
        "trust": {"trust_anchors": anchors_pem.decode()},
    }
    context = c2pa.Context(c2pa.Settings.from_dict(settings))
    try:
        reader = c2pa.Reader.try_create(mime_type, io.BytesIO(data), None, context)
        if reader is None:
            return Verification(state="None", manifest=None, failures=[])
        with reader:
            results = reader.get_validation_results() or {}
            failures = list((results.get("activeManifest") or {}).get("failure", []))
            return Verification(
                state=reader.get_validation_state() or "None",
                manifest=reader.get_active_manifest(),
                failures=failures,
            )
    except c2pa.C2paError as exc:
        return Verification(
            state="Invalid", manifest=None, failures=[{"code": "read", "explanation": str(exc)}]
        )
    finally:
        context.close()


def describe(verification: Verification) -> dict[str, Any]:
    """A JSON-ready summary of a verification."""
    return {
        "state": verification.state,
        "ok": verification.ok,
        "licence": verification.licence(),
        "failures": verification.failures,
        "signer": (verification.manifest or {}).get("signature_info"),
    }


def as_json(verification: Verification) -> str:
    """The summary as JSON text."""
    return json.dumps(describe(verification), sort_keys=True)
