"""Who may do what: login sessions, roles, CSRF, and the response headers every page gets."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Response, abort, current_app, g, redirect, request, session, url_for
from werkzeug.wrappers import Response as BaseResponse

from cloud_stub.review.users import User, UserStore

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The only endpoint a visitor without a session may reach.
PUBLIC_ENDPOINTS = {"login"}
MAX_FAILURES = 5
LOCKOUT_S = 15 * 60


def secret_key(root: Path) -> bytes:
    """The session-signing key, made once per ingest root and kept readable by its owner only,
    so sessions survive restarts and no default key ever exists."""
    path = Path(root) / "review-secret.key"
    if not path.exists():
        fd_path = path.with_suffix(".part")
        fd_path.write_bytes(b"")
        fd_path.chmod(0o600)
        fd_path.write_text(secrets.token_hex(32))
        fd_path.replace(path)
    return bytes.fromhex(path.read_text().strip())


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _same_origin(value: str) -> bool:
    parts = urlsplit(value)
    here = urlsplit(request.host_url)
    return (parts.scheme, parts.netloc) == (here.scheme, here.netloc)


def check_request() -> BaseResponse | None:
    """``before_request``: load the user, refuse anonymous access and cross-site posts."""
    g.user = _session_user()
    if request.endpoint not in PUBLIC_ENDPOINTS and g.user is None:
        wants_page = request.method == "GET" and request.accept_mimetypes.accept_html
        if wants_page and request.endpoint != "static":
            return redirect(url_for("login", next=request.full_path))
        abort(401)
    if request.method not in SAFE_METHODS:
        # A browser names the page a post came from; another origin (even another port on the
        # same host, which SameSite cookies do not stop) is refused before the token is read.
        origin = request.headers.get("Origin")
        if origin is not None and (origin == "null" or not _same_origin(origin)):
            abort(403, "cross-origin request refused")
        sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        expected = session.get("csrf") or ""
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            abort(403, "missing or wrong CSRF token: reload the page and try again")
    return None


def _session_user() -> User | None:
    name = session.get("user")
    if not name:
        return None
    user = users().get(name)
    # A changed password or role voids older sessions; a deleted user has none.
    if user is None or user.session_epoch != session.get("epoch"):
        session.clear()
        return None
    return user


def users() -> UserStore:
    return current_app.extensions["review_users"]


def requires(role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if g.user is None:
                abort(401)
            if not g.user.can(role):
                abort(403, f"this needs the {role} role")
            return view(*args, **kwargs)

        return wrapped

    return decorate


def log_in(user: User) -> None:
    session.clear()  # a fresh session id and CSRF token: no fixation across the login
    session.permanent = True
    session["user"] = user.username
    session["epoch"] = user.session_epoch
    session["csrf"] = secrets.token_urlsafe(32)


class Throttle:
    """Refuses logins for a user name after repeated failures (per process, in memory)."""

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}

    def locked(self, username: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._failures.get(username, []) if now - t < LOCKOUT_S]
        self._failures[username] = recent
        return len(recent) >= MAX_FAILURES

    def failed(self, username: str) -> None:
        self._failures.setdefault(username, []).append(time.monotonic())

    def succeeded(self, username: str) -> None:
        self._failures.pop(username, None)


def add_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response
