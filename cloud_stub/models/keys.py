"""Ed25519 signing keys. The private key is written 0600 where the operator says, never into
a pack or the repository; the ``.pub`` (PEM) is what devices are given to trust."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device.contracts.signing import key_id


class SigningKeyError(ValueError):
    """A key file that cannot be used."""


def new_keypair(directory: Path, name: str = "camtrap-models") -> tuple[Path, Path]:
    """Write ``NAME.key`` (PKCS#8 PEM, 0600) and ``NAME.pub`` (PEM); refuses to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if key_path.exists() or pub_path.exists():
        raise SigningKeyError(f"{key_path} or {pub_path} exists; refusing to replace a signing key")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private)
        fh.flush()
        os.fsync(fh.fileno())
    pub_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(
            f"{path}: not a readable unencrypted PEM private key ({exc})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 key")
    return key


def describe(key: Ed25519PrivateKey) -> str:
    return key_id(key.public_key())
