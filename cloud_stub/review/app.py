"""The review web app (Flask, server-rendered): captures, one event, fleet, login, media."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.middleware.proxy_fix import ProxyFix

from cloud_stub.ingest.database import Database
from cloud_stub.media import MediaStorage
from cloud_stub.review import captures, fleet, provenance, publish, security
from cloud_stub.review.reviews import ACTIONS, ReviewError, save_review
from cloud_stub.review.taxa import TaxonList
from cloud_stub.review.users import UserStore, users_path

log = logging.getLogger("camtrap-cloud.review")


class ReviewSetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class ReviewConfig:
    root: Path  # the ingest root: ingest.sqlite and media/
    pack: Path | None = None  # model pack whose taxonomy feeds the taxon list
    threshold: float = 0.65  # below this machine confidence an event needs review
    secure_cookies: bool = True  # False only for plain-HTTP development (--insecure-http)
    behind_proxy: bool = False  # trust one reverse proxy's X-Forwarded-* headers
    ota: publish.OtaSettings | None = None  # broker for publishing models from the page
    db_url: str | None = None  # the PostgreSQL store (--db); None: $CAMTRAP_CLOUD_DB or SQLite


def create_app(config: ReviewConfig) -> Flask:
    from cloud_stub.ingest.opening import database_url, describe
    from cloud_stub.ingest.store import database_error, is_read_only, open_store_db, store_path

    root = Path(config.root)
    db_path = store_path(root)
    on_server = database_url(config.db_url) is not None
    if not on_server and not db_path.exists():
        raise ReviewSetupError(f"no ingest database at {db_path}: run ingest (or the demo) first")
    read_only = is_read_only(root, config.db_url)
    # Opened (and checked) once here: a damaged, unreadable or unreachable store, or a server
    # without ingest tables, fails now, in one line.
    open_store_db(root, check=True, url=config.db_url).close()
    where = describe(root, config.db_url)
    secret_file = root / "review-secret.key"
    if read_only and not secret_file.exists():
        log.warning("%s is read-only: sessions last until the server stops", where)
        secret = secrets.token_bytes(32)
    else:
        secret = security.secret_key(root)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secret,
        SESSION_COOKIE_NAME="camtrap_review",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    if config.behind_proxy:
        # Flask's documented way to add WSGI middleware; its stubs type wsgi_app as a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1
        )
    app.extensions["review_config"] = config
    users = users_path(root)
    if read_only and not users.exists():
        # Nowhere to keep accounts next to a read-only store: keep them for this run only.
        import tempfile

        users = Path(tempfile.mkdtemp(prefix="camtrap-review-")) / users.name
        log.warning("%s is read-only: review accounts live in %s for this run", where, users)
    app.extensions["review_users"] = UserStore(users)
    app.extensions["review_taxa"] = TaxonList.from_pack(config.pack)
    app.extensions["review_throttle"] = security.Throttle()
    app.extensions["review_db_path"] = db_path
    app.extensions["review_read_only"] = read_only
    app.extensions["review_media_root"] = (root / "media").resolve()
    if not read_only:
        try:
            db = _connect(root, config.db_url)
            try:
                captures.ensure_indexes(db)
            finally:
                db.close()
        except Exception as exc:
            err = database_error(root, exc)
            if err is None:
                raise
            raise err from exc

    app.before_request(security.check_request)
    app.after_request(security.add_headers)
    app.teardown_appcontext(_close_db)
    app.jinja_env.globals.update(csrf_token=security.csrf_token, sparkline=fleet.sparkline)
    app.jinja_env.filters["pct"] = _pct
    _routes(app)
    return app


def _connect(root: Path, url: str | None, read_only: bool = False) -> Database:
    """The store through the one door: written to (reviews), or a read-only copy (mode=ro,
    immutable on a read-only mount) where pages work and reviews do not."""
    from cloud_stub.ingest.store import open_store_db

    db = open_store_db(root, write=not read_only, check=False, url=url)
    if db.dialect == "sqlite" and not read_only:
        try:
            # Ingest commits with synchronous=FULL for the same reason: a review is someone's
            # work.
            db.execute("PRAGMA synchronous=FULL")
            # Pages are read straight from the OS cache instead of being copied into a fresh
            # per-connection cache on every request: a filter that walks many events stays
            # fast.
            db.execute("PRAGMA mmap_size=1073741824")
        except BaseException:
            db.close()
            raise
    return db


def db() -> Database:
    if "db" not in g:
        g.db = _connect(
            _config().root,
            _config().db_url,
            current_app.extensions.get("review_read_only", False),
        )
    return g.db


def _media_store() -> MediaStorage:
    """Where the files are, as the ingest recorded it (read once per process)."""
    store = current_app.extensions.get("review_media_store")
    if store is None:
        from cloud_stub.ingest.opening import open_store_media

        store = open_store_media(db(), _config().root)
        current_app.extensions["review_media_store"] = store
    return store


def _from_object_store(store: MediaStorage, media_id: str, relative: str, mimetype: str) -> Any:
    """A file from the bucket, read through the page (browsers need no bucket credentials)."""
    from cloud_stub.media import MediaMissing, MediaPathError, MediaUnavailable

    try:
        with store.open(relative) as handle:
            data = handle.read()
    except (MediaMissing, MediaPathError):
        log.warning("media %s: %r is not in %s", media_id, relative, store.name)
        abort(404)
    except MediaUnavailable as exc:
        log.warning("media %s: %s", media_id, exc.message)
        abort(503)
    response = Response(data, mimetype=mimetype)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def _close_db(_exc: BaseException | None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _config() -> ReviewConfig:
    return current_app.extensions["review_config"]


def _taxa() -> TaxonList:
    return current_app.extensions["review_taxa"]


def _filters() -> captures.Filters:
    filters = captures.Filters.from_args(request.args)
    if filters.species:
        # A common name typed into the filter means that taxon's scientific name.
        choice = _taxa().resolve(filters.species)
        filters.species = choice.scientific_name if choice else ""
    return filters


def _url_keeping(endpoint: str, filters: captures.Filters, **values: str) -> str:
    """A link to ``endpoint`` that keeps the gallery's filters in its query string."""
    # One dict of plain values: url_for's own options (_external, ...) are never among them.
    params: dict[str, Any] = {**values, **filters.query()}
    return url_for(endpoint, **params)


def _local_path(target: str | None) -> str | None:
    """``target`` when it is a path on this site (no scheme, no host): no open redirects."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and "\\" not in target else None


def _routes(app: Flask) -> None:
    @app.get("/login", endpoint="login")
    @app.post("/login", endpoint="login")
    def login() -> Any:
        if request.method == "GET":
            return render_template("login.html", next=request.args.get("next", ""))
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        throttle: security.Throttle = current_app.extensions["review_throttle"]
        if throttle.locked(username):
            return render_template("login.html", error="too many attempts: wait 15 minutes"), 429
        user = security.users().authenticate(username, password)
        if user is None:
            throttle.failed(username)
            log.warning("failed login for %r from %s", username, request.remote_addr)
            return render_template("login.html", error="wrong user name or password"), 401
        throttle.succeeded(username)
        security.log_in(user)
        return redirect(_local_path(request.form.get("next")) or url_for("captures_view"))

    @app.post("/logout")
    def logout() -> Any:
        from flask import session

        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def index() -> Any:
        return redirect(url_for("captures_view"))

    @app.get("/captures")
    def captures_view() -> Any:
        filters = _filters()
        page = captures.gallery(
            db(),
            filters,
            threshold=_config().threshold,
            after=request.args.get("after", ""),
            before=request.args.get("before", ""),
        )
        return render_template(
            "captures.html",
            page=page,
            filters=filters,
            query=filters.query(),
            options=captures.options(db()),
            species=captures.species_present(db()),
            types=captures.OBSERVATION_TYPES,
            threshold=_config().threshold,
        )

    @app.get("/events/<event_id>")
    def event_view(event_id: str) -> Any:
        event = captures.event_detail(db(), event_id)
        if event is None:
            abort(404)
        filters = _filters()
        threshold = _config().threshold
        anchor = {"event_start": event["event_start"], "event_id": event_id}
        older = captures.neighbour(db(), filters, anchor, threshold=threshold)
        newer_page = captures.gallery(
            db(), filters, threshold=threshold, before=captures.cursor_of(anchor), limit=1
        )
        newer = newer_page.rows[0]["event_id"] if newer_page.rows else None
        return render_template(
            "event.html",
            event=event,
            query=filters.query(),
            older=older,
            newer=newer,
            can_review=g.user.can("reviewer"),
            actions=ACTIONS,
        )

    @app.post("/events/<event_id>/review")
    @security.requires("reviewer")
    def review(event_id: str) -> Any:
        filters = _filters()
        action = request.form.get("action", "")
        taxon = request.form.get("taxon", "")
        count_text = request.form.get("count", "").strip()
        try:
            count = int(count_text) if count_text else None
        except ValueError:
            count = -1
        choice = _taxa().resolve(taxon) if action == "correct" else None
        # The next event is found before saving: a "needs review" filter drops this one.
        event = captures.event_detail(db(), event_id)
        if event is None:
            abort(404)
        anchor = {"event_start": event["event_start"], "event_id": event_id}
        following = captures.neighbour(db(), filters, anchor, threshold=_config().threshold)
        try:
            save_review(
                db(), event_id, username=g.user.username, action=action, choice=choice, count=count
            )
        except ReviewError as exc:
            flash(str(exc), "error")
            return redirect(_url_keeping("event_view", filters, event_id=event_id))
        flash(f"saved: {action}" + (f" {choice.display}" if choice else ""), "ok")
        if following:
            return redirect(_url_keeping("event_view", filters, event_id=following))
        return redirect(_url_keeping("captures_view", filters))

    @app.get("/media/<media_id>/<kind>")
    def media(media_id: str, kind: str) -> Any:
        if kind not in ("thumbnail", "full"):
            abort(404)
        row = (
            db()
            .execute(
                "SELECT file_path, thumbnail_path, file_mediatype FROM media WHERE media_id = ?",
                (media_id,),
            )
            .fetchone()
        )
        relative = row and (row["thumbnail_path"] if kind == "thumbnail" else row["file_path"])
        if not relative:
            abort(404)
        mimetype = "image/jpeg" if kind == "thumbnail" else row["file_mediatype"]
        store = _media_store()
        if store.name != "local":
            response = _from_object_store(store, media_id, relative, mimetype)
        else:
            media_root: Path = current_app.extensions["review_media_root"]
            target = (media_root / relative).resolve()
            # resolve() follows "..", absolute parts and links; whatever lands outside is
            # refused.
            if not target.is_relative_to(media_root) or not target.is_file():
                log.warning("media %s: %r is outside the media root or missing", media_id, relative)
                abort(404)
            response = send_file(target, mimetype=mimetype, max_age=3600, conditional=True)
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.get("/api/events/<event_id>")
    def event_api(event_id: str) -> Any:
        event = captures.event_detail(db(), event_id)
        if event is None:
            return jsonify({"error": f"no event {event_id}"}), 404
        return jsonify(provenance.event_json(event))

    @app.get("/api/taxa")
    def taxa_api() -> Any:
        query = request.args.get("q", "")
        limit = 2000 if not query else 50
        response = jsonify([c.display for c in _taxa().search(query, limit=limit)])
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    @app.get("/fleet")
    def fleet_view() -> Any:
        rows, rollout_known = fleet.fleet(db(), _config().root, _config().db_url)
        return render_template(
            "fleet.html", rows=rows, rollout_known=rollout_known, imported=fleet.imported(db())
        )

    @app.get("/admin/models")
    @security.requires("admin")
    def models_view() -> Any:
        return render_template(
            "models.html",
            available=publish.available(),
            rollouts=publish.status(_config().root, _config().db_url),
        )

    @app.post("/admin/models/publish")
    @security.requires("admin")
    def models_publish() -> Any:
        config = _config()
        return publish.handle(request.form, g.user.username, config.root, config.ota, config.db_url)

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(413)
    @app.errorhandler(501)
    def error_page(exc: Any) -> Any:
        return render_template("error.html", error=exc), exc.code
