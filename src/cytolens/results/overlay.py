"""Overlay pictures: the image with class-coloured boxes or dots, score labels and a count legend."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cytolens.io.colors import class_color
from cytolens.io.images import read_image

if TYPE_CHECKING:
    from cytolens.results.result import Result


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (unsized on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def draw_result(result: Result, image: np.ndarray | None = None, labels: bool = True) -> np.ndarray:
    """Draw ``result`` on its image.

    Args:
        result: The cells to draw.
        image: The pixels (``(H, W, 3)`` uint8); read from ``result.path`` when omitted.
        labels: Write ``class score`` beside each box (points get dots only, to stay readable).

    Returns:
        The overlay as an ``(H, W, 3)`` uint8 array.

    """
    pixels = read_image(result.path) if image is None else image
    canvas = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = max(1.0, max(canvas.size) / 640)
    text_font = font(int(11 * scale))
    width = max(1, int(round(2 * scale)))
    cells, boxed = result.cells, result.cells.has_box
    for index, (label, score) in enumerate(zip(cells.labels, cells.scores, strict=True)):
        colour = class_color(int(label))
        if boxed[index]:
            x1, y1, x2, y2 = cells.boxes[index]
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
            if labels:
                name = result.classes[label] if label >= 0 else "?"
                draw.text((x1 + 2, y1 + 1), f"{name} {score:.2f}", fill=colour, font=text_font)
        else:
            x, y = cells.centres[index]
            radius = 3 * scale
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    counts = [f"{name}: {count}" for name, count in result.counts().items() if count]
    legend = "  ".join(counts) or "no cells found"
    box = draw.textbbox((4, 4), legend, font=text_font)
    draw.rectangle([box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3], fill=(255, 255, 255))
    draw.text((4, 4), legend, fill=(0, 0, 0), font=text_font)
    return np.asarray(canvas)
