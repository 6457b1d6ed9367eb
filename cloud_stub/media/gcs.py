"""Media as objects in a Google Cloud Storage bucket (google-cloud-storage).

Each ``put`` uploads at once and is durable when it returns: an upload is atomic in GCS (a
single-request upload, or a resumable one finalized by its last request), so a failed one
leaves nothing visible under the name. ``flush`` and ``discard`` have nothing left to do: the
objects of a failed batch stay unreferenced, and the redelivery that follows writes the same
bytes under the same name (paths are made of mediaIDs).

Every request has a bounded timeout and a bounded retry, so a store that is down fails the
call within seconds (``MediaUnavailable``) instead of holding the ingest: it then does not ack,
and the device or broker delivers again later.
"""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from cloud_stub.media.errors import MediaMissing, MediaUnavailable
from cloud_stub.media.storage import Relative, checked
from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"  # the variable google-cloud-storage itself follows
PUBLIC_HOST = "storage.googleapis.com"
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0
RETRY_DEADLINE_S = 5.0  # all attempts of one call, back-off included

T = TypeVar("T")


def parse_gs_url(spec: str) -> tuple[str, str]:
    """``gs://bucket[/prefix]`` -> (bucket, prefix without slashes at either end)."""
    rest = spec.removeprefix("gs://")
    bucket, _, prefix = rest.partition("/")
    if not spec.startswith("gs://") or not bucket:
        raise UserError(f"media store {spec!r}: expected gs://BUCKET[/PREFIX]", Exit.USAGE)
    return bucket, prefix.strip("/")


class GcsMedia:
    name = "gcs"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        retry_deadline_s: float = RETRY_DEADLINE_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        try:
            from google.api_core import exceptions as api_exceptions
            from google.auth import exceptions as auth_exceptions
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage
            from google.cloud.storage import exceptions as storage_exceptions
            from google.cloud.storage.retry import DEFAULT_RETRY
            from requests import exceptions as requests_exceptions
            from urllib3 import exceptions as urllib3_exceptions
        except ImportError as exc:
            raise UserError(
                f"gs://{bucket}: google-cloud-storage is not installed "
                "(pip install 'camtrap[cloud]')",
                Exit.UNAVAILABLE,
            ) from exc
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        emulator = os.environ.get(EMULATOR_ENV)
        self.host = emulator or PUBLIC_HOST
        self._not_found = api_exceptions.NotFound
        # Everything that means "the store did not do it": refused or unreachable, timed out,
        # retries exhausted, credentials refused, a bad or corrupt answer. Anything else is
        # a bug and must surface as one.
        self._store_failed: tuple[type[BaseException], ...] = (
            api_exceptions.GoogleAPICallError,
            api_exceptions.RetryError,
            auth_exceptions.GoogleAuthError,
            requests_exceptions.RequestException,
            urllib3_exceptions.HTTPError,
            storage_exceptions.InvalidResponse,
            storage_exceptions.DataCorruption,
            OSError,
        )
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._retry = DEFAULT_RETRY.with_timeout(retry_deadline_s).with_delay(
            initial=0.1, maximum=1.0
        )
        try:
            if emulator:
                # The emulator takes no credentials; without them the client would look for
                # Google's and ask the metadata server.
                client = storage.Client(project="camtrap", credentials=AnonymousCredentials())
            else:
                client = storage.Client()
        except auth_exceptions.GoogleAuthError as exc:
            raise UserError(
                f"gs://{bucket}: no Google credentials for {self.host}: {_first_line(exc)}",
                Exit.USAGE,
            ) from exc
        self._bucket = client.bucket(bucket)

    def __repr__(self) -> str:
        return f"GcsMedia({self.url('')!r} via {self.host})"

    def _key(self, relative: Relative) -> str:
        path = checked(relative).as_posix()
        return f"{self.prefix}/{path}" if self.prefix else path

    def _call(self, what: str, key: str, action: Callable[[], T]) -> T:
        """Run one request; turn the library's many failures into our two errors."""
        try:
            return action()
        except self._not_found as exc:
            raise MediaMissing(f"gs://{self.bucket_name}/{key}: {_first_line(exc)}") from exc
        except self._store_failed as exc:
            raise MediaUnavailable(
                f"gs://{self.bucket_name}/{key}: cannot {what} at {self.host}: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc

    def put(self, relative: Relative, pieces: Iterable[bytes]) -> None:
        key = self._key(relative)
        data = b"".join(pieces)  # whole before the first request: a failing source sends nothing
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        blob = self._bucket.blob(key)

        def upload() -> None:
            blob.upload_from_string(
                data, content_type=content_type, timeout=self._timeout, retry=self._retry
            )

        try:
            self._call("upload", key, upload)
        except MediaMissing as exc:  # a 404 on upload: the bucket itself is not there
            raise MediaUnavailable(
                f"gs://{self.bucket_name}: no such bucket at {self.host}"
            ) from exc

    def flush(self) -> None:
        return None  # every put was durable when it returned

    def discard(self) -> None:
        return None  # nothing pending: see the module docstring

    def open(self, relative: Relative) -> BinaryIO:
        key = self._key(relative)
        blob = self._bucket.blob(key)
        data: bytes = self._call(
            "download",
            key,
            lambda: blob.download_as_bytes(timeout=self._timeout, retry=self._retry),
        )
        return io.BytesIO(data)

    def exists(self, relative: Relative) -> bool:
        key = self._key(relative)
        blob = self._bucket.blob(key)
        found: Any = self._call(
            "look up", key, lambda: blob.exists(timeout=self._timeout, retry=self._retry)
        )
        return bool(found)

    def url(self, relative: Relative) -> str:
        key = self._key(relative) if str(relative) else self.prefix
        return f"gs://{self.bucket_name}/{key}".rstrip("/")

    def local_path(self, relative: Relative) -> Path | None:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
