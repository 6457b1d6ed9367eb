"""Password hashing with scrypt (stdlib), self-describing so parameters can grow later."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

# 2**15 * 8 * 128 bytes = 32 MiB per hash: expensive to brute-force, about 0.1 s here.
_N, _R, _P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=_DKLEN
    )
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# Verified against when the user does not exist, so a miss costs as much as a wrong password
# and response times do not tell which user names exist.
DUMMY_HASH = hash_password(os.urandom(16).hex())
