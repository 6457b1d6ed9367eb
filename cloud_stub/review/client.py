"""A scripted reviewer: a client of the review page's own HTTP interface, as a browser uses it.

It logs in through the login form (session cookie, CSRF token from the form), walks the
gallery's pages for event IDs (``/captures`` with any of its filters, following the "older"
link), and posts a review per event to ``/events/<id>/review`` exactly as the event page's
form does. The page answers a review with a redirect and a flash message; the client reads the
message, so a refused review (no such taxon, no machine label to confirm, ...) is an error
here too. No private route: what the client can do, a person at the page can do.

The demo uses it to label its synced events with the truth of the simulated scenes.
"""

from __future__ import annotations

import http.cookiejar
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser

ACTIONS = ("confirm", "correct", "blank", "human", "vehicle")  # the review form's buttons
MAX_PAGES = 10_000  # a bound on walking the gallery, far above any real queue


class ReviewClientError(RuntimeError):
    """The page refused, or could not be reached; the message is one line."""


class _Page(HTMLParser):
    """What the client needs from a page: the CSRF token, the gallery's event IDs and its
    "older" link, and the flash messages."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.csrf: str | None = None
        self.events: list[str] = []
        self.older: str | None = None
        self.flashes: list[tuple[str, str]] = []  # (category, text)
        self._flash: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name") == "csrf_token" and self.csrf is None:
            self.csrf = a.get("value")
        elif tag == "a" and "card" in a.get("class", "").split() and a.get("data-event"):
            self.events.append(a["data-event"])
        elif tag == "a" and a.get("id") == "older":
            self.older = a.get("href")
        elif tag == "div" and "flash" in a.get("class", "").split():
            classes = [c for c in a["class"].split() if c != "flash"]
            self._flash = classes[0] if classes else ""
            self.flashes.append((self._flash, ""))

    def handle_data(self, data: str) -> None:
        if self._flash is not None:
            category, text = self.flashes[-1]
            self.flashes[-1] = (category, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._flash is not None:
            category, text = self.flashes[-1]
            self.flashes[-1] = (category, " ".join(text.split()))
            self._flash = None


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


class ReviewClient:
    """One reviewer's session with the page at ``base_url`` (``http(s)://host:port``)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self._cookies)
        )
        self._csrf: str | None = None

    # -- HTTP --------------------------------------------------------------------------------

    def _request(self, path: str, form: dict[str, str] | None = None) -> tuple[str, str]:
        """GET (or POST ``form``) ``path``, following redirects; returns (final URL, body)."""
        url = path if path.startswith("http") else self.base_url + path
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(url, data=data, headers={"Accept": "text/html"})
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return response.geturl(), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            raise ReviewClientError(_refusal(exc, path)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReviewClientError(f"{self.base_url}: cannot reach the page ({reason})") from None

    def _post(self, path: str, form: dict[str, str]) -> _Page:
        if self._csrf is None:
            raise ReviewClientError("log in first")
        _, body = self._request(path, {"csrf_token": self._csrf, **form})
        page = _parse(body)
        self._csrf = page.csrf or self._csrf
        return page

    # -- what a reviewer does ----------------------------------------------------------------

    def login(self, username: str, password: str) -> None:
        """Log in through the form; ReviewClientError names a refused login."""
        self._csrf = _parse(self._request("/login")[1]).csrf
        if not self._csrf:
            raise ReviewClientError(f"{self.base_url}/login: no login form (is this the page?)")
        url, body = self._request(
            "/login", {"csrf_token": self._csrf, "username": username, "password": password}
        )
        page = _parse(body)
        if urllib.parse.urlsplit(url).path == "/login" or page.csrf is None:
            raise ReviewClientError(f"login as {username!r} refused")
        # Logging in starts a fresh session with its own CSRF token: take it from this page.
        self._csrf = page.csrf

    def event_ids(self, **filters: str) -> list[str]:
        """Every event the gallery lists under ``filters`` (its query parameters, e.g.
        ``reviewed="no"``, ``device=...``), newest first, across all its pages."""
        query = urllib.parse.urlencode({k: v for k, v in filters.items() if v})
        path: str | None = "/captures" + (f"?{query}" if query else "")
        found: list[str] = []
        for _ in range(MAX_PAGES):
            if path is None:
                return found
            page = _parse(self._request(path)[1])
            found += [e for e in page.events if e not in found]
            path = page.older
        raise ReviewClientError(f"the gallery has more than {MAX_PAGES} pages")

    def review(
        self, event_id: str, action: str, *, taxon: str | None = None, count: int | None = None
    ) -> str:
        """Post one review (``action`` as the form's buttons; ``taxon`` for ``correct``);
        returns the page's confirmation, e.g. ``saved: correct Felis catus — tabby (species)``."""
        if action not in ACTIONS:
            raise ReviewClientError(f"action {action!r}: one of {', '.join(ACTIONS)}")
        form = {"action": action, "taxon": taxon or ""}
        if count is not None:
            form["count"] = str(count)
        page = self._post(f"/events/{urllib.parse.quote(event_id, safe='')}/review", form)
        errors = [text for category, text in page.flashes if category == "error"]
        if errors:
            raise ReviewClientError(f"event {event_id}: {errors[0]}")
        saved = [text for category, text in page.flashes if text.startswith("saved:")]
        if not saved:
            raise ReviewClientError(f"event {event_id}: the page did not confirm the review")
        return saved[0]


def _refusal(exc: urllib.error.HTTPError, path: str) -> str:
    """One line for an HTTP error page: the status and the page's own reason."""
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    reason = _error_text(body) or exc.reason
    return f"{path}: HTTP {exc.code} ({reason})"


class _ErrorText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._inside = self._inside or tag == "p"

    def handle_data(self, data: str) -> None:
        if self._inside and data.strip():
            self.texts.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._inside = False


def _error_text(body: str) -> str:
    """The error page's (or the login form's) first paragraph: the reason it gives."""
    parser = _ErrorText()
    parser.feed(body)
    return " ".join(parser.texts[0].split())[:200] if parser.texts else ""
