"""Which media store a command uses: ``--media`` / config value to a backend."""

from __future__ import annotations

from pathlib import Path

from cloud_stub.media.local import LocalMedia
from cloud_stub.media.storage import MediaStorage
from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit


def open_media(spec: str | None, root: Path) -> MediaStorage:
    """None or "local" -> files under ``<root>/media``; "gs://bucket[/prefix]" -> that bucket.

    For GCS the endpoint is Google's, or the emulator named by STORAGE_EMULATOR_HOST (as
    google-cloud-storage does). The GCS client is imported only when a bucket is asked for, so
    the default store needs nothing beyond the standard library.
    """
    if spec is None or spec == "local":
        return LocalMedia(Path(root) / "media")
    if spec.startswith("gs://"):
        from cloud_stub.media.gcs import GcsMedia, parse_gs_url

        bucket, prefix = parse_gs_url(spec)
        return GcsMedia(bucket, prefix)
    raise UserError(f"media store {spec!r}: expected 'local' or gs://BUCKET[/PREFIX]", Exit.USAGE)
