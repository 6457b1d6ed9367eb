"""Copy one selected image to the destination: skip what is there, retry what fails for now.

Sources are http(s) URLs, ``gs://`` URIs or local paths; destinations a local directory or a
``gs://`` prefix. Google Cloud Storage is used only where ``google-cloud-storage`` is installed
and credentials exist: it is imported when a ``gs://`` path is met, never before.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_stub.handoff.records import HandoffError

RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class CopyPolicy:
    attempts: int = 4
    backoff_s: float = 0.5  # first wait; doubles each retry
    timeout_s: float = 30.0


@dataclass(frozen=True)
class CopyResult:
    status: str  # copied | skipped | failed
    source: str
    target: str
    attempts: int = 0
    error: str = ""


class _Permanent(Exception):
    """A failure that another attempt cannot fix (404, a missing local file)."""


def gcs_client() -> Any:
    try:
        from google.cloud import storage
    except ImportError as exc:
        raise HandoffError(
            "gs:// paths need google-cloud-storage (pip install google-cloud-storage) and "
            "credentials (gcloud auth application-default login)"
        ) from exc
    try:
        return storage.Client()
    except Exception as exc:  # google.auth's DefaultCredentialsError and friends
        raise HandoffError(f"cannot use Google Cloud Storage: {exc}") from exc


def _split_gs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    return bucket, name


def join(dest: str, relative: str) -> str:
    relative = relative.lstrip("/")
    if dest.startswith("gs://"):
        return dest.rstrip("/") + "/" + relative
    target = (Path(dest) / relative).absolute()
    # file_name comes from someone else's metadata: it must not climb out of the destination.
    if not target.resolve().is_relative_to(Path(dest).absolute().resolve()):
        raise HandoffError(f"file name {relative!r} would leave the destination")
    return str(target)


def check_destination(dest: str) -> None:
    """Fail early, with a plain message, when the destination cannot take files."""
    if dest.startswith("gs://"):
        bucket, _ = _split_gs(dest)
        client = gcs_client()
        try:
            if not client.bucket(bucket).exists():
                raise HandoffError(f"bucket gs://{bucket} does not exist or is not visible")
        except HandoffError:
            raise
        except Exception as exc:
            raise HandoffError(f"cannot reach gs://{bucket}: {exc}") from exc
        return
    path = Path(dest)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".camtrap-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HandoffError(f"destination {path.absolute()} is not writable: {exc}") from exc


def _read(source: str, policy: CopyPolicy) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=policy.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            if exc.code in RETRYABLE_HTTP:
                raise
            raise _Permanent(f"HTTP {exc.code}") from exc
    if source.startswith("gs://"):
        bucket, name = _split_gs(source)
        return gcs_client().bucket(bucket).blob(name).download_as_bytes()
    try:
        return Path(source).read_bytes()
    except FileNotFoundError as exc:
        raise _Permanent(f"no such file: {source}") from exc


def _exists(target: str) -> bool:
    if target.startswith("gs://"):
        bucket, name = _split_gs(target)
        return gcs_client().bucket(bucket).blob(name).exists()
    path = Path(target)
    return path.is_file() and path.stat().st_size > 0


def _write(target: str, data: bytes) -> None:
    if target.startswith("gs://"):
        bucket, name = _split_gs(target)
        # if_generation_match=0: never overwrite an object someone else finished meanwhile.
        gcs_client().bucket(bucket).blob(name).upload_from_string(data, if_generation_match=0)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + f".part-{os.getpid()}")
    part.write_bytes(data)
    os.replace(part, path)  # a reader sees no file or the whole file


def copy_image(
    source: str,
    target: str,
    policy: CopyPolicy = CopyPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> CopyResult:
    """Copy ``source`` to ``target`` unless it is there; retries transient failures."""
    try:
        if _exists(target):
            return CopyResult("skipped", source, target)
    except Exception as exc:
        return CopyResult("failed", source, target, 0, f"checking the destination: {exc}")
    error = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            _write(target, _read(source, policy))
            return CopyResult("copied", source, target, attempt)
        except _Permanent as exc:
            return CopyResult("failed", source, target, attempt, str(exc))
        except (OSError, urllib.error.URLError, HandoffError) as exc:
            error = str(exc)
            if isinstance(exc, (PermissionError, HandoffError)):
                return CopyResult("failed", source, target, attempt, error)
        except Exception as exc:  # a cloud client's transient error: retry like the rest
            error = f"{type(exc).__name__}: {exc}"
        if attempt < policy.attempts:
            sleep(policy.backoff_s * 2 ** (attempt - 1))
    return CopyResult("failed", source, target, policy.attempts, error)
