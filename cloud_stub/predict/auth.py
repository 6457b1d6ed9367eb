"""Who may ask: a bearer token read from a file only its owner can read, or nobody at all on a
loopback address when the operator says ``--insecure-no-auth``."""

from __future__ import annotations

import hmac
import ipaddress
from pathlib import Path

from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit

__all__ = ["is_loopback", "read_token", "token_matches"]

LOOPBACK_NAMES = {"localhost"}
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The token in ``path``; ``UserError`` when it is missing (66), readable by others or too
    short to be a secret (2): a token others can read is refused rather than trusted."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise UserError(f"--token-file {path}: no such file", Exit.NO_INPUT) from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"--token-file {path}: cannot read ({reason})", Exit.NO_INPUT) from exc
    if mode & 0o077:
        raise UserError(f"--token-file {path}: must be mode 0600, is {mode & 0o777:o}", Exit.USAGE)
    if len(text) < MIN_TOKEN_CHARS:
        raise UserError(
            f"--token-file {path}: the token must be at least {MIN_TOKEN_CHARS} characters",
            Exit.USAGE,
        )
    return text


def token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>`` compared in constant time."""
    if not header or not header.startswith("Bearer "):
        return False
    given = header.removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())
