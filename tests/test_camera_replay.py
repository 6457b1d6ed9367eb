"""The replay camera serves a directory's JPEGs as frames, and never crashes on a bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.config import CameraSection
from device.hardware.camera import CameraError, open_camera
from device.hardware.camera_replay import ReplayCamera

LORES = (80, 60)
ORIENTATION = 0x0112


def quadrant_image(width: int = 800, height: int = 600) -> Image.Image:
    """Black, with the top-left quadrant white: easy to locate after any rotation."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[: height // 2, : width // 2] = 255
    return Image.fromarray(pixels, "RGB")


def jpeg_bytes(image: Image.Image, **save_args: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92, **save_args)
    return buf.getvalue()


def assert_top_left_bright(lores: np.ndarray) -> None:
    h, w = lores.shape
    top_left = lores[: h // 2 - 2, : w // 2 - 2].mean()
    rest = lores[h // 2 + 2 :, w // 2 + 2 :].mean()
    assert top_left > 230, top_left
    assert rest < 25, rest


def started(directory: Path) -> ReplayCamera:
    camera = ReplayCamera(directory, LORES)
    camera.start()
    return camera


def test_frames_come_in_name_order_and_loop(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.JPEG", "c.jpeg"):
        (tmp_path / name).write_bytes(jpeg_bytes(quadrant_image()))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "d.png").write_bytes(b"\x89PNG not served")
    camera = started(tmp_path)
    sources = [camera.capture().meta["source"] for _ in range(7)]
    assert sources == ["a.JPEG", "b.jpg", "c.jpeg", "a.JPEG", "b.jpg", "c.jpeg", "a.JPEG"]


def test_jpeg_is_the_file_unchanged_and_lores_is_its_luma(tmp_path: Path) -> None:
    data = jpeg_bytes(quadrant_image(1024, 768))
    (tmp_path / "f.jpg").write_bytes(data)
    frame = started(tmp_path).capture()
    assert frame.jpeg == data
    assert frame.error is None
    assert (frame.width, frame.height) == (1024, 768)
    assert frame.lores is not None
    assert frame.lores.dtype == np.uint8
    assert frame.lores.shape == (LORES[1], LORES[0])
    assert_top_left_bright(frame.lores)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_decode_to_the_same_luma(tmp_path: Path, mode: str) -> None:
    (tmp_path / "f.jpg").write_bytes(jpeg_bytes(quadrant_image().convert(mode)))
    frame = started(tmp_path).capture()
    assert frame.error is None
    assert frame.lores is not None and frame.lores.shape == (LORES[1], LORES[0])
    assert_top_left_bright(frame.lores)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored turned a quarter left; orientation 6 tells viewers to turn it back right.
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored = quadrant_image(800, 600).transpose(Image.Transpose.ROTATE_90)
    assert stored.size == (600, 800)
    (tmp_path / "f.jpg").write_bytes(jpeg_bytes(stored, exif=exif))
    frame = started(tmp_path).capture()
    assert frame.error is None
    assert (frame.width, frame.height) == (800, 600)
    assert frame.lores is not None
    assert_top_left_bright(frame.lores)


def test_large_jpeg_is_scaled_to_the_lores_size(tmp_path: Path) -> None:
    (tmp_path / "big.jpg").write_bytes(jpeg_bytes(quadrant_image(4056, 3040)))
    frame = started(tmp_path).capture()
    assert frame.lores is not None and frame.lores.shape == (LORES[1], LORES[0])
    assert_top_left_bright(frame.lores)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("empty.jpg", lambda good: b""),
        ("truncated.jpg", lambda good: good[: len(good) // 3]),
        ("garbage.jpg", lambda good: b"this is not an image at all" * 20),
        ("png-named.jpg", None),
    ],
)
def test_bad_files_become_error_frames_with_their_bytes(tmp_path: Path, name: str, make) -> None:
    good = jpeg_bytes(quadrant_image())
    if make is None:
        buf = io.BytesIO()
        quadrant_image().save(buf, format="PNG")
        bad = buf.getvalue()
    else:
        bad = make(good)
    (tmp_path / f"a-{name}").write_bytes(bad)
    (tmp_path / "b-good.jpg").write_bytes(good)
    camera = started(tmp_path)

    broken = camera.capture()
    assert broken.jpeg == bad
    assert broken.lores is None
    assert broken.error and f"a-{name}" in broken.error
    assert broken.meta["source"] == f"a-{name}"

    after = camera.capture()  # one bad file does not spoil the next
    assert after.error is None and after.lores is not None


def test_empty_directory_fails_at_start_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(CameraError, match=r"no \.jpg/\.jpeg files"):
        ReplayCamera(tmp_path, LORES).start()


def test_missing_directory_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="not a directory"):
        ReplayCamera(tmp_path / "nowhere", LORES).start()


def test_capture_before_start_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(jpeg_bytes(quadrant_image()))
    with pytest.raises(CameraError):
        ReplayCamera(tmp_path, LORES).capture()


def test_open_camera_builds_a_replay_camera_from_config(tmp_path: Path) -> None:
    (tmp_path / "f.jpg").write_bytes(jpeg_bytes(quadrant_image()))
    section = CameraSection(backend="replay", replay_dir=tmp_path, lores_size=(64, 48))
    camera = open_camera(section)
    camera.start()
    frame = camera.capture()
    assert frame.lores is not None and frame.lores.shape == (48, 64)
    camera.close()
