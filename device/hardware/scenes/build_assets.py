"""Dev-time only: rebuild the synthetic-scene assets from scikit-image's bundled CC0 images.

scikit-image is not a runtime dependency; run this in a throwaway environment:

    python -m venv /tmp/sk && /tmp/sk/bin/pip install scikit-image pillow
    /tmp/sk/bin/python device/hardware/scenes/build_assets.py

It reads the image files shipped inside the skimage package (no download) and writes small,
downscaled copies next to this script. The licence of each source is in README.md here.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
MAX_BYTES = 40 * 1024


def _skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def _save_jpeg(image: Image.Image, name: str) -> None:
    # Lower the quality until the file fits the size budget the repo keeps for assets.
    for quality in range(88, 40, -4):
        path = HERE / name
        image.save(path, format="JPEG", quality=quality, optimize=True)
        if path.stat().st_size <= MAX_BYTES:
            print(f"{name}: {image.size} q{quality} {path.stat().st_size} bytes")
            return
    raise SystemExit(f"{name}: cannot fit {MAX_BYTES} bytes")


def main() -> None:
    src = _skimage_data_dir()
    # Textures: greyscale, kept at 320 px so they tile cheaply and stay small on disk.
    for name in ("grass", "gravel"):
        tile = (
            Image.open(src / f"{name}.png")
            .convert("L")
            .resize((320, 320), Image.Resampling.LANCZOS)
        )
        _save_jpeg(tile, f"{name}.jpg")
    # The cat: the full photograph; the renderer cuts it out with a soft ellipse.
    cat = (
        Image.open(src / "chelsea.png").convert("RGB").resize((360, 240), Image.Resampling.LANCZOS)
    )
    _save_jpeg(cat, "chelsea.jpg")
    # The horse silhouette becomes a 1-bit mask (black horse -> white mask).
    horse = Image.open(src / "horse.png").convert("RGBA")
    alpha = horse.getchannel("A")
    luma = horse.convert("L")
    mask = Image.eval(luma, lambda v: 255 if v < 128 else 0)
    mask = Image.composite(mask, Image.new("L", mask.size, 0), alpha).convert("1")
    mask.save(HERE / "horse_mask.png", optimize=True)
    print(f"horse_mask.png: {mask.size} {(HERE / 'horse_mask.png').stat().st_size} bytes")


if __name__ == "__main__":
    main()
