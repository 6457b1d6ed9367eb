"""Resumable HTTP(S) downloads of pack files, checked against the signed manifest.

Bytes go to ``<file>.part`` and are fsync'd after every attempt, so a download interrupted by a
dropped link or a reboot resumes with ``Range: bytes=<have>-`` instead of starting over. A file
is renamed to its final name only once its size and sha256 equal the manifest's.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

from device.contracts.durable import fsync_dir
from device.contracts.hashing import sha256_file

BLOCK = 64 * 1024
_CONTENT_RANGE = re.compile(r"bytes (?:\d+-\d+|\*)/(\d+)")


class DownloadError(RuntimeError):
    """The file could not be fetched, or what arrived is not what the manifest promises."""


def file_url(base: str, name: str) -> str:
    scheme = urlsplit(base).scheme
    if scheme not in ("http", "https"):
        raise DownloadError(f"pack URL scheme {scheme!r} is not http or https")
    return base.rstrip("/") + "/" + quote(name)


class Downloader:
    def __init__(
        self,
        *,
        timeout_s: float = 30.0,
        retries: int = 5,
        ca_file: Path | None = None,
        backoff_s: float = 0.2,
    ) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.resumed = 0  # attempts that continued a partial file (for reports and tests)

    def fetch(self, url: str, final: Path, size: int, sha256: str) -> None:
        """Make ``final`` hold exactly the ``size`` bytes whose digest is ``sha256``."""
        if final.exists() and final.stat().st_size == size and sha256_file(final) == sha256:
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_name(final.name + ".part")
        restarted = False
        while True:
            self._fill(url, part, size)
            if sha256_file(part) == sha256:
                break
            part.unlink()
            if restarted:
                raise DownloadError(f"{final.name}: sha256 mismatch (twice, from scratch)")
            restarted = True  # a corrupted resume is possible once; a second mismatch is not
        os.replace(part, final)
        fsync_dir(final.parent)

    def _fill(self, url: str, part: Path, size: int) -> None:
        failures = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            if have > size:
                part.unlink()
                have = 0
            if have == size:
                return
            try:
                self._attempt(url, part, have, size)
                continue
            except DownloadError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                failures += 1
                if failures > self.retries:
                    raise DownloadError(
                        f"{part.name[:-5]}: gave up after {failures} attempts ({exc})"
                    ) from exc
                time.sleep(min(5.0, self.backoff_s * 2 ** (failures - 1)))

    def _attempt(self, url: str, part: Path, have: int, size: int) -> None:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:
                total = _CONTENT_RANGE.match(exc.headers.get("Content-Range", "") or "")
                served = int(total.group(1)) if total else -1
                raise DownloadError(
                    f"{part.name[:-5]}: server has {served} bytes, manifest says {size}"
                ) from exc
            if 400 <= exc.code < 500:
                raise DownloadError(f"{url}: HTTP {exc.code}") from exc
            raise OSError(f"HTTP {exc.code}") from exc
        with response:
            if have and response.status == 200:
                have = 0  # the server ignored Range: start over
            elif have:
                self.resumed += 1
            stated = _served_total(response)
            if stated is not None and stated < size:
                # A short file on the server stays short: no retry can fix it.
                raise DownloadError(
                    f"{part.name[:-5]}: server has {stated} bytes, manifest says {size}"
                )
            mode = "r+b" if have else "wb"
            if not part.exists():
                part.touch()
            with part.open(mode) as fh:
                fh.seek(have)
                fh.truncate()
                try:
                    remaining = size - have
                    while remaining > 0:
                        block = response.read(min(BLOCK, remaining))
                        if not block:
                            break
                        fh.write(block)
                        remaining -= len(block)
                finally:
                    # Whatever arrived is kept (and durable) for the next attempt to resume.
                    fh.flush()
                    os.fsync(fh.fileno())
            if remaining > 0:
                raise OSError(f"connection ended {remaining} bytes short")


def _served_total(response: http.client.HTTPResponse) -> int | None:
    """The whole file's length as the server states it, if it does."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", "") or "")
        return int(match.group(1)) if match else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None
