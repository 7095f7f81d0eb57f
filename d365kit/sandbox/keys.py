"""Key material of a sandbox data dir, made once at first start and kept as private files (0600).

- ``ca.pem`` / ``ca-key.pem``: the local CA (trustme) that signs the HTTPS server certificate. Clients
  trust exactly ``ca.pem``.
- ``signing-key.pem``: RSA key that signs access tokens (RS256); its public half is served as JWKS.
- ``client-cert.pem`` / ``client-key.pem``: the demo app's certificate credential (for the
  certificate-assertion grant); the sandbox registers the certificate's thumbprint.
- ``credentials.json``: the demo app's client secret and the admin key of the control endpoints.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner can read, created with that mode (no window of 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _rsa_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class KeyMaterial:
    data_dir: Path
    client_secret: str
    admin_key: str

    @property
    def ca_path(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.data_dir / "ca-key.pem"

    @property
    def signing_key_path(self) -> Path:
        return self.data_dir / "signing-key.pem"

    @property
    def client_cert_path(self) -> Path:
        return self.data_dir / "client-cert.pem"

    @property
    def client_key_path(self) -> Path:
        return self.data_dir / "client-key.pem"

    def ca(self) -> trustme.CA:
        return trustme.CA.from_pem(self.ca_path.read_bytes(), self.ca_key_path.read_bytes())

    def signing_key_pem(self) -> bytes:
        return self.signing_key_path.read_bytes()

    def client_cert_pem(self) -> bytes:
        return self.client_cert_path.read_bytes()

    def client_cert_thumbprint(self) -> str:
        """SHA-1 thumbprint (hex, upper case) as Entra and msal use it."""
        cert = x509.load_pem_x509_certificate(self.client_cert_pem())
        return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S324 - the protocol's choice


def ensure_material(data_dir: Path) -> KeyMaterial:
    """Load the data dir's key material, creating whatever is missing."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    creds_path = data_dir / "credentials.json"
    if creds_path.exists():
        creds = json.loads(creds_path.read_text())
    else:
        creds = {"client_secret": "sbx~" + secrets.token_urlsafe(30), "admin_key": secrets.token_urlsafe(24)}
        write_private(creds_path, json.dumps(creds, indent=2).encode())
    km = KeyMaterial(data_dir, creds["client_secret"], creds["admin_key"])

    if not (km.ca_path.exists() and km.ca_key_path.exists()):
        ca = trustme.CA(organization_name="d365kit sandbox")
        write_private(km.ca_key_path, ca.private_key_pem.bytes())
        km.ca_path.write_bytes(ca.cert_pem.bytes())
    if not km.signing_key_path.exists():
        write_private(
            km.signing_key_path, _rsa_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        )
    if not (km.client_cert_path.exists() and km.client_key_path.exists()):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d365kit sandbox demo app")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        write_private(km.client_key_path, _rsa_pem(key))
        km.client_cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return km
