"""The trap's label: a QR code for the terminal and a PNG to print and stick on the housing."""

from __future__ import annotations

import io
from typing import TextIO

import qrcode
from PIL import Image, ImageDraw, ImageFont


def payload(device_id: str, deployment_id: str) -> str:
    return f"camtrap:device={device_id};deployment={deployment_id}"


def _qr(text: str) -> qrcode.QRCode:
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=2, box_size=8)
    qr.add_data(text)
    qr.make(fit=True)
    return qr


def print_terminal(out: TextIO, device_id: str, deployment_id: str) -> None:
    buffer = io.StringIO()
    _qr(payload(device_id, deployment_id)).print_ascii(out=buffer, invert=True)
    out.write(buffer.getvalue())


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1
    except TypeError:
        return ImageFont.load_default()


def png(device_id: str, deployment_id: str) -> bytes:
    """QR code above two lines of text; decodes to ``payload(...)``."""
    code = _qr(payload(device_id, deployment_id)).make_image(fill_color="black", back_color="white")
    code_img = code.get_image() if hasattr(code, "get_image") else code._img
    code_img = code_img.convert("RGB")
    lines = [f"device {device_id}", f"deployment {deployment_id}"]
    font = _font(18)
    probe = ImageDraw.Draw(code_img)
    width = max(code_img.width, *(int(probe.textlength(t, font=font)) + 24 for t in lines))
    label = Image.new("RGB", (width, code_img.height + 28 * len(lines) + 12), "white")
    label.paste(code_img, ((width - code_img.width) // 2, 0))
    draw = ImageDraw.Draw(label)
    for i, text in enumerate(lines):
        draw.text((12, code_img.height + 4 + 28 * i), text, fill="black", font=font)
    buffer = io.BytesIO()
    label.save(buffer, "PNG")
    return buffer.getvalue()
