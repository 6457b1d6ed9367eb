"""Where the cloud keeps received media files: one door, two backends.

``open_media(spec, root)`` gives the store the ingest writes through and the readers (export,
review page, hand-off, training) read through: the local filesystem under ``<root>/media``
(the default), or a Google Cloud Storage bucket for ``gs://bucket[/prefix]``. Both take the
same relative paths (``<deployment>/[thumbnails/]<mediaID><ext>``), so a path stored in the
database means the same file on either.
"""

from __future__ import annotations

from cloud_stub.media.errors import MediaMissing, MediaPathError, MediaUnavailable
from cloud_stub.media.local import LocalMedia
from cloud_stub.media.spec import open_media
from cloud_stub.media.storage import MediaStorage, Relative

__all__ = [
    "LocalMedia",
    "MediaMissing",
    "MediaPathError",
    "MediaStorage",
    "MediaUnavailable",
    "Relative",
    "open_media",
]
