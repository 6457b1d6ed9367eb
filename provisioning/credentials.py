"""The device's key and certificate: made here, enrolled online, or imported from a USB stick.

The private key is generated on the device, written 0600 for the service user, and never sent
anywhere: only a CSR leaves. Re-runs keep a key and certificate that still belong together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioning import registry_client
from provisioning.paths import Paths
from provisioning.system import Effects, ProvisionError


@dataclass(frozen=True)
class Credentials:
    key: Path
    cert: Path
    ca: Path
    broker_host: str | None = None
    broker_port: int | None = None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _load_cert(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _cn(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    # By hand rather than verify_directly_issued_by, which Debian 12's cryptography (38) lacks.
    public = ca.public_key()
    if cert.issuer != ca.subject or not isinstance(public, ec.EllipticCurvePublicKey):
        return False
    hash_algorithm = cert.signature_hash_algorithm
    if hash_algorithm is None:
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hash_algorithm))
    except InvalidSignature:
        return False
    return True


def current(paths: Paths, device_id: str) -> Credentials | None:
    """Usable credentials already on the device: key, cert for it naming us, the CA."""
    key, cert, ca = _load_key(paths.key), _load_cert(paths.cert), _load_cert(paths.ca)
    if key is None or cert is None or ca is None:
        return None
    if _cn(cert) != device_id or not _same_key(cert, key) or not _signed_by(cert, ca):
        return None
    return Credentials(paths.key, paths.cert, paths.ca)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ensure_key(paths: Paths, effects: Effects) -> ec.EllipticCurvePrivateKey:
    key = _load_key(paths.key)
    if key is not None:
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    effects.mkdir(paths.pki_dir, 0o755)
    effects.write(paths.key, _key_pem(key), private=True, preview="(new EC P-256 private key)")
    return key


def make_csr(device_id: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def enrol(
    paths: Paths, effects: Effects, device_id: str, url: str, ca_file: Path | None, token: str
) -> Credentials:
    if effects.dry_run:
        effects.say(f"  would make a key and CSR (CN={device_id}) and POST it to {url}/v1/enrol")
        effects.say(f"  would write {paths.cert} and {paths.ca} from the registry's answer")
        return Credentials(paths.key, paths.cert, paths.ca)
    key = ensure_key(paths, effects)
    reply = registry_client.enrol(url, ca_file, token, device_id, make_csr(device_id, key))
    try:
        cert_pem, ca_pem = reply["certificate"].encode(), reply["ca"].encode()
        broker = reply["broker"]
        host, port = str(broker["host"]), int(broker["port"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisionError(f"registry answer lacks {exc}") from exc
    cert, ca = x509.load_pem_x509_certificate(cert_pem), x509.load_pem_x509_certificate(ca_pem)
    if _cn(cert) != device_id or not _same_key(cert, key) or not _signed_by(cert, ca):
        raise ProvisionError("the registry returned a certificate that is not for this key")
    effects.write(paths.ca, ca_pem)
    effects.write(paths.cert, cert_pem)
    return Credentials(paths.key, paths.cert, paths.ca, host, port)


def export_csr(paths: Paths, effects: Effects, device_id: str, directory: Path) -> Path:
    """For the offline round trip: the CSR goes out on the stick, the certificate comes back."""
    key = ensure_key(paths, effects)
    out = directory / f"{device_id}.csr"
    effects.write(out, make_csr(device_id, key))
    return out


def import_dir(paths: Paths, effects: Effects, device_id: str, directory: Path) -> Credentials:
    """Take ``ca.crt`` and ``<device id>.crt`` (or ``device.crt``) from ``directory``.

    The certificate must name this device and be signed by that CA. If the directory also holds
    a key (made off the device, against our advice) it is imported with a warning.
    """
    ca = _load_cert(directory / "ca.crt")
    if ca is None:
        raise ProvisionError(f"{directory}/ca.crt is missing or not a PEM certificate")
    cert_path = next(
        (p for p in (directory / f"{device_id}.crt", directory / "device.crt") if p.exists()), None
    )
    cert = _load_cert(cert_path) if cert_path else None
    if cert is None or cert_path is None:
        raise ProvisionError(f"{directory} has no {device_id}.crt (or device.crt) certificate")
    if _cn(cert) != device_id:
        raise ProvisionError(f"{cert_path} is for {_cn(cert)!r}, not this device ({device_id})")
    if not _signed_by(cert, ca):
        raise ProvisionError(f"{cert_path} is not signed by {directory}/ca.crt")
    key_path = next(
        (p for p in (directory / f"{device_id}.key", directory / "device.key") if p.exists()), None
    )
    if key_path is not None:
        key = _load_key(key_path)
        if key is None or not _same_key(cert, key):
            raise ProvisionError(f"{key_path} does not belong to {cert_path}")
        effects.say(
            f"  warning: importing a private key made off the device ({key_path}); "
            "prefer --export-csr so the key never leaves the trap"
        )
        effects.mkdir(paths.pki_dir, 0o755)
        effects.write(paths.key, _key_pem(key), private=True, preview="(imported private key)")
    else:
        key = _load_key(paths.key)
        if key is None or not _same_key(cert, key):
            raise ProvisionError(
                f"{cert_path} does not match this device's key {paths.key}; make a CSR with "
                "--export-csr and have the office sign that"
            )
    effects.write(paths.ca, (directory / "ca.crt").read_bytes())
    effects.write(paths.cert, cert_path.read_bytes())
    return Credentials(paths.key, paths.cert, paths.ca)
