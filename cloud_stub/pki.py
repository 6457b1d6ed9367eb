"""The fleet's small PKI: one CA, a broker certificate, and one client certificate per device.

Devices make their own key and send a CSR; the CA signs it with CN = device id, which the
broker (``use_identity_as_username``) then uses as the MQTT username that ACL patterns match.
Keys are EC P-256: small, fast on a Pi, and accepted by mosquitto and Python's ssl.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class PkiError(ValueError):
    """A CSR or CA that must not be used, with the reason."""


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path


def _write_private(path: Path, data: bytes) -> None:
    # Create with 0600 from the start so the key is never readable by others, even briefly.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(
    directory: Path, name: str = "camtrap fleet CA", days: int = 3650
) -> CertificateAuthority:
    """Make a CA key and self-signed certificate (``ca.key`` 0600, ``ca.crt``) in ``directory``."""
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if key_path.exists():
        raise PkiError(f"{key_path} exists; refusing to replace a CA (devices trust it)")
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    # Backdated a little so a device whose clock lags still accepts fresh certificates.
    start = _now() - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key_pem(key))
    _write_public(cert_path, cert_pem(cert))
    return CertificateAuthority(cert, key, cert_path, key_path)


def load_ca(directory: Path) -> CertificateAuthority:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an EC key")
    return CertificateAuthority(cert, key, cert_path, key_path)


def _leaf(
    ca: CertificateAuthority,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    usage: x509.ObjectIdentifier,
    days: int,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    start = _now() - dt.timedelta(days=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue_server_cert(
    ca: CertificateAuthority,
    directory: Path,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 825,
) -> tuple[Path, Path]:
    """A broker certificate valid for ``hosts`` (names and IP addresses); returns (crt, key)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = new_key()
    cert = _leaf(
        ca,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]),
        key.public_key(),
        ExtendedKeyUsageOID.SERVER_AUTH,
        days,
        x509.SubjectAlternativeName(names),
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    _write_private(key_path, key_pem(key))
    _write_public(cert_path, cert_pem(cert))
    return cert_path, key_path


def make_csr(device_id: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The device side: a PEM CSR for its own key, CN = device id."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def sign_csr(ca: CertificateAuthority, csr_pem: bytes, device_id: str, days: int = 3650) -> bytes:
    """Sign a device CSR after checking it names exactly ``device_id``; returns the PEM cert."""
    if not DEVICE_ID_RE.match(device_id):
        raise PkiError(f"device id {device_id!r} is not usable as an MQTT username")
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise PkiError(f"not a PEM certificate request: {exc}") from exc
    if not csr.is_signature_valid:
        raise PkiError("CSR signature does not verify")
    cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1 or cns[0].value != device_id:
        raise PkiError(f"CSR CN is {[c.value for c in cns]}, expected {device_id!r}")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise PkiError("only EC keys are accepted")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    return cert_pem(_leaf(ca, subject, public_key, ExtendedKeyUsageOID.CLIENT_AUTH, days))


def issue_client_cert(
    ca: CertificateAuthority, directory: Path, client_id: str, days: int = 3650
) -> tuple[Path, Path]:
    """Key, CSR and signature in one go (tests, the ingest user); returns (crt, key)."""
    key = new_key()
    cert = sign_csr(ca, make_csr(client_id, key), client_id, days)
    cert_path, key_path = directory / f"{client_id}.crt", directory / f"{client_id}.key"
    _write_private(key_path, key_pem(key))
    _write_public(cert_path, cert)
    return cert_path, key_path
