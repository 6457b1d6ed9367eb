"""Media storage: one behaviour, two backends (local files, a GCS bucket on the emulator)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from cloud_stub.media import (
    LocalMedia,
    MediaMissing,
    MediaPathError,
    MediaStorage,
    MediaUnavailable,
    open_media,
)
from device.contracts.errors import UserError
from device.contracts.exitcodes import Exit
from tests.support.gcs_emulator import GcsBucket, GcsEmulator

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"
PHOTO = "dep-1/0b9c5a3e-5d3f-4c1e-9a57-7c1de0d0a001.jpg"
THUMB = "dep-1/thumbnails/0b9c5a3e-5d3f-4c1e-9a57-7c1de0d0a001.jpg"
PREFIX = "trap-media/v1"
# A store that is down must fail a put within seconds (GcsMedia retries for 5 s at most).
DOWN_STORE_BOUND_S = 10.0


@pytest.fixture(params=["local", "gcs"])
def media(request: pytest.FixtureRequest, tmp_path: Path) -> MediaStorage:
    if request.param == "local":
        return open_media(None, tmp_path)
    bucket: GcsBucket = request.getfixturevalue("gcs_bucket")
    return open_media(f"gs://{bucket.name}/{PREFIX}", tmp_path)


def _read(media: MediaStorage, relative: str) -> bytes:
    with media.open(relative) as f:
        return f.read()


def test_a_file_put_and_flushed_reads_back_byte_for_byte(media: MediaStorage) -> None:
    media.put(PHOTO, [JPEG[:100], JPEG[100:]])
    media.flush()
    assert media.exists(PHOTO)
    assert _read(media, PHOTO) == JPEG


def test_paths_given_as_path_objects_name_the_same_file(media: MediaStorage) -> None:
    media.put(PurePosixPath(THUMB), [b"thumb"])
    media.flush()
    assert _read(media, THUMB) == b"thumb"
    assert media.exists(Path(THUMB))


def test_a_second_put_of_the_same_path_replaces_the_file(media: MediaStorage) -> None:
    # A redelivered item is written again under its mediaID: the last write is what reads.
    media.put(PHOTO, [b"first"])
    media.put(PHOTO, [JPEG])
    media.flush()
    assert _read(media, PHOTO) == JPEG


def test_a_missing_file_is_media_missing_in_one_line(media: MediaStorage) -> None:
    assert not media.exists(PHOTO)
    with pytest.raises(MediaMissing) as caught:
        media.open(PHOTO)
    assert caught.value.code == Exit.NO_INPUT
    assert PHOTO in caught.value.message and "\n" not in caught.value.message


class SourceFailed(Exception):
    pass


def test_a_put_whose_source_fails_midway_leaves_nothing_visible(media: MediaStorage) -> None:
    def pieces() -> Iterator[bytes]:
        yield JPEG[:100]
        raise SourceFailed("chunk store went away")

    with pytest.raises(SourceFailed, match="chunk store went away"):
        media.put(PHOTO, pieces())
    media.discard()
    assert not media.exists(PHOTO)
    with pytest.raises(MediaMissing):
        media.open(PHOTO)


@pytest.mark.parametrize("bad", ["../outside.jpg", "dep-1/../../x.jpg", "/etc/passwd", ""])
def test_a_path_that_leaves_the_store_is_refused(media: MediaStorage, bad: str) -> None:
    with pytest.raises(MediaPathError) as caught:
        media.put(bad, [b"x"])
    assert caught.value.code == Exit.DATA_ERROR
    with pytest.raises(MediaPathError):
        media.open(bad)


def test_local_store_names_files_by_their_relative_path(tmp_path: Path) -> None:
    media = open_media("local", tmp_path)
    assert isinstance(media, LocalMedia) and media.name == "local"
    media.put(PHOTO, [JPEG])
    media.flush()
    assert media.url(PHOTO) == PHOTO
    assert media.local_path(PHOTO) == tmp_path / "media" / PHOTO
    assert (tmp_path / "media" / PHOTO).read_bytes() == JPEG
    assert not list((tmp_path / "media").rglob("*.tmp"))


def test_gcs_store_names_objects_by_gs_url_and_has_no_local_path(
    gcs_bucket: GcsBucket, tmp_path: Path
) -> None:
    media = open_media(f"gs://{gcs_bucket.name}/{PREFIX}/", tmp_path)
    assert media.name == "gcs"
    assert media.url(PHOTO) == f"gs://{gcs_bucket.name}/{PREFIX}/{PHOTO}"
    assert media.local_path(PHOTO) is None
    bare = open_media(f"gs://{gcs_bucket.name}", tmp_path)
    assert bare.url(THUMB) == f"gs://{gcs_bucket.name}/{THUMB}"


def test_gcs_objects_land_under_the_prefix_with_a_content_type(
    gcs_bucket: GcsBucket, tmp_path: Path
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    open_media(f"gs://{gcs_bucket.name}/{PREFIX}", tmp_path).put(PHOTO, [JPEG])
    client = storage.Client(project="camtrap-test", credentials=AnonymousCredentials())
    blobs = list(client.list_blobs(gcs_bucket.name, timeout=10))
    assert [b.name for b in blobs] == [f"{PREFIX}/{PHOTO}"]
    assert blobs[0].content_type == "image/jpeg"
    assert blobs[0].size == len(JPEG)


def test_gcs_bucket_that_does_not_exist_is_unavailable_not_missing(
    gcs_bucket: GcsBucket, tmp_path: Path
) -> None:
    media = open_media(f"gs://{gcs_bucket.name}-nope", tmp_path)
    with pytest.raises(MediaUnavailable) as caught:
        media.put(PHOTO, [JPEG])
    assert f"gs://{gcs_bucket.name}-nope" in caught.value.message


def test_gcs_store_down_fails_put_within_seconds_and_works_once_it_is_back(
    gcs_emulator: GcsEmulator, gcs_bucket: GcsBucket, tmp_path: Path
) -> None:
    media = open_media(f"gs://{gcs_bucket.name}/{PREFIX}", tmp_path)
    media.put(THUMB, [b"before the outage"])
    gcs_emulator.stop()
    try:
        started = time.monotonic()
        with pytest.raises(MediaUnavailable) as caught:
            media.put(PHOTO, [JPEG])
        took = time.monotonic() - started
        with pytest.raises(MediaUnavailable):
            media.open(THUMB)
    finally:
        gcs_emulator.start()
    assert took < DOWN_STORE_BOUND_S, f"a down store held the put for {took:.1f} s"
    error = caught.value
    assert error.code == Exit.UNAVAILABLE
    assert gcs_bucket.name in error.message and f"127.0.0.1:{gcs_emulator.port}" in error.message
    assert "\n" not in error.message
    media.put(PHOTO, [JPEG])
    assert _read(media, PHOTO) == JPEG
    assert _read(media, THUMB) == b"before the outage", "the store kept what it held"


def test_an_unknown_store_spec_is_a_usage_error(tmp_path: Path) -> None:
    for spec in ("s3://bucket", "gs://", "/srv/media"):
        with pytest.raises(UserError) as caught:
            open_media(spec, tmp_path)
        assert caught.value.code == Exit.USAGE
        assert repr(spec) in caught.value.message
