"""Decoding odd images, framing crops, and feeding the model's input tensor."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from device.vision.preprocess import (
    ImageError,
    InputEncoder,
    array_to_image,
    crop_resize,
    full_box,
    load_image,
    region_box,
    tile_boxes,
)
from device.vision.runtime import TensorSpec


def _left_red_right_blue(w: int = 200, h: int = 100) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2, 0] = 255
    a[:, w // 2 :, 2] = 255
    return a


def test_cmyk_greyscale_palette_and_rgba_images_decode_to_rgb(tmp_path):
    base = Image.fromarray(_left_red_right_blue())
    variants = {
        "cmyk.jpg": base.convert("CMYK"),
        "grey.jpg": base.convert("L"),
        "palette.png": base.convert("P"),
        "alpha.png": base.convert("RGBA"),
    }
    for name, im in variants.items():
        im.save(tmp_path / name)
        out = load_image(tmp_path / name, 100)
        assert out.mode == "RGB", name
        assert out.size == (200, 100), name
    cmyk = np.asarray(load_image(tmp_path / "cmyk.jpg", 100))
    assert cmyk[50, 20, 0] > 200 and cmyk[50, 20, 2] < 60  # still red on the left


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    # Stored sideways (100 wide, 200 high) with EXIF orientation 6 = "rotate 90 CW to view".
    stored = Image.fromarray(_left_red_right_blue()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "rot.jpg", exif=exif)
    out = load_image(tmp_path / "rot.jpg", 100)
    assert out.size == (200, 100)
    pixels = np.asarray(out)
    assert pixels[50, 20, 0] > 200  # red is on the left again
    assert pixels[50, 180, 2] > 200


def test_truncated_jpeg_is_a_clear_error(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)).save(
        tmp_path / "full.jpg", quality=90
    )
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: cannot decode"):
        load_image(tmp_path / "cut.jpg", 100)
    (tmp_path / "text.jpg").write_text("not a picture")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "text.jpg", 100)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "absent.jpg", 100)


def test_big_jpegs_are_decoded_at_reduced_scale_but_never_below_the_request(tmp_path):
    Image.new("RGB", (2304, 1296), (90, 120, 60)).save(tmp_path / "big.jpg")
    out = load_image(tmp_path / "big.jpg", 373)
    assert out.size == (576, 324) or min(out.size) >= 373
    assert min(out.size) >= 324 and out.size[0] < 2304
    assert min(load_image(tmp_path / "big.jpg", 400).size) >= 400


def test_center_crop_takes_the_middle_square_and_tiles_reach_every_edge():
    assert full_box((400, 300), "center_crop", (224, 224)) == (50, 0, 350, 300)
    assert full_box((400, 300), "squash", (224, 224)) == (0, 0, 400, 300)
    tiles = tile_boxes((1600, 900), fraction=0.6, overlap=0.25, max_tiles=8)
    assert 2 <= len(tiles) <= 8
    assert min(t[0] for t in tiles) == 0 and max(t[2] for t in tiles) == 1600
    assert min(t[1] for t in tiles) == 0 and max(t[3] for t in tiles) == 900
    assert all(t[2] - t[0] == t[3] - t[1] == 540 for t in tiles)
    assert tile_boxes((1600, 900), 0.6, 0.25, 0) == []


def test_region_crop_is_square_inside_the_frame_around_the_region():
    box = region_box((400, 300), (0.9, 0.5, 0.1, 0.1))  # touching the right edge
    assert box[2] <= 400 and box[0] >= 0 and box[3] <= 300
    assert box[2] - box[0] == box[3] - box[1]
    assert box[0] <= 360 <= box[2]


def test_crop_resize_gives_the_target_size_and_pads_when_asked():
    im = array_to_image(_left_red_right_blue(200, 100))
    assert crop_resize(im, (0, 0, 200, 100), (32, 32)).shape == (32, 32, 3)
    padded = crop_resize(im, (0, 0, 200, 100), (32, 32), pad=True)
    assert padded[0, 16].sum() == 0 and padded[16, 4, 0] > 200


def test_luma_arrays_become_grey_rgb_and_wrong_arrays_are_refused():
    im = array_to_image(np.full((24, 32), 77, np.uint8))
    assert im.mode == "RGB" and np.asarray(im)[0, 0].tolist() == [77, 77, 77]
    with pytest.raises(ImageError):
        array_to_image(np.zeros((4, 4), np.float32))


def _spec(dtype, scale, zp) -> TensorSpec:
    return TensorSpec(
        index=0, shape=(1, 2, 2, 3), dtype=np.dtype(dtype), scale=scale, zero_point=zp
    )


PIXELS = np.array([[[0, 127, 255], [1, 2, 3]], [[200, 100, 50], [255, 0, 128]]], np.uint8)


def _real(q, spec):
    return (q.astype(np.float32) - spec.zero_point) * spec.scale


def test_uint8_input_whose_quantisation_matches_the_normalisation_is_fed_raw_pixels():
    spec = _spec(np.uint8, 1 / 128, 127)
    enc = InputEncoder(spec, (127.0,) * 3, (128.0,) * 3)
    assert enc.pixel_offset == 0
    out = enc.encode(PIXELS)
    assert out.dtype == np.uint8 and out.shape == (1, 2, 2, 3)
    np.testing.assert_array_equal(out[0], PIXELS)


def test_int8_input_with_folded_normalisation_represents_the_same_real_values():
    spec = _spec(np.int8, 1 / 128, -1)
    enc = InputEncoder(spec, (127.0,) * 3, (128.0,) * 3)
    assert enc.pixel_offset == -128
    out = enc.encode(PIXELS)
    assert out.dtype == np.int8
    want = (PIXELS.astype(np.float32) - 127) / 128
    np.testing.assert_allclose(_real(out[0], spec), want, atol=1e-6)


def test_inputs_that_do_not_fold_go_through_float_and_stay_within_one_step():
    spec = _spec(np.uint8, 1 / 255, 0)  # model wants [0, 1] but the manifest says [-1, 1]
    enc = InputEncoder(spec, (127.5,) * 3, (127.5,) * 3)
    assert enc.pixel_offset is None
    out = enc.encode(PIXELS)
    want = np.clip((PIXELS.astype(np.float32) - 127.5) / 127.5, 0, 1)
    assert np.abs(_real(out[0], spec) - want).max() <= spec.scale / 2 + 1e-6
    float_out = InputEncoder(_spec(np.float32, 0.0, 0), (127.0,) * 3, (128.0,) * 3).encode(PIXELS)
    assert float_out.dtype == np.float32
    np.testing.assert_allclose(float_out[0], (PIXELS - 127.0) / 128.0)
