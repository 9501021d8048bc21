"""Overlay pictures: the image with class-coloured boxes or dots, score labels and a legend of the counts.

The picture keeps the image's size. Each box is outlined in its class colour (:mod:`cytolens.io.colors`)
and labelled ``class score`` on a tag filled with that colour, in black or white text, whichever
contrasts more, so labels stay readable on any background. Points are dots ringed in white. The legend,
at the top left on a translucent white band, gives each class found as a colour swatch, its name and its
count; it wraps onto further lines when the classes do not fit across the image (the 13 classes of
``rbc-morphology`` take two or three lines on a 640-pixel-wide image). An image classified whole (a crop, by
a patch classifier) has the types called and their probabilities in its legend instead. Sizes grow with the
image (lines, text and dots are drawn for a 640-pixel-wide view).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cytolens.io.colors import class_color
from cytolens.io.images import read_image

if TYPE_CHECKING:
    from cytolens.results.result import Result

Colour = tuple[int, int, int]

LEGEND_OPACITY = 210
"""Opacity (0-255) of the legend's white band."""


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (unsized on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def text_colour(background: Colour) -> Colour:
    """Black or white, whichever reads better on ``background`` (by its relative luminance, ITU-R BT.709)."""
    red, green, blue = (channel / 255 for channel in background)
    return (0, 0, 0) if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else (255, 255, 255)


def _tag(
    draw: ImageDraw.ImageDraw,
    corner: tuple[float, float],
    text: str,
    colour: Colour,
    text_font: ImageFont.ImageFont,
    height: int,
) -> None:
    """Write ``text`` on a tag filled with ``colour``, sitting on top of ``corner`` (below it at the image's top)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
    pad = max(1, (bottom - top) // 4)
    tag_height = bottom - top + 2 * pad
    x, y = corner
    y = y - tag_height if y - tag_height >= 0 else min(y, height - tag_height)
    draw.rectangle([x, y, x + right - left + 2 * pad, y + tag_height], fill=colour)
    draw.text((x + pad - left, y + pad - top), text, fill=text_colour(colour), font=text_font)


def _legend(
    canvas: Image.Image, entries: Sequence[tuple[Colour | None, str]], text_font: ImageFont.ImageFont
) -> Image.Image:
    """``canvas`` with a legend at its top left: entries (swatch colour, text) flowing left to right, wrapped."""
    measure = ImageDraw.Draw(canvas)
    _, top, _, bottom = measure.textbbox((0, 0), "Ag", font=text_font)
    line = bottom - top
    pad, gap, swatch = max(2, line // 3), line, line
    width = canvas.width
    placed, x, y, widest = [], pad, pad, 0
    for colour, text in entries:
        left, _, right, _ = measure.textbbox((0, 0), text, font=text_font)
        entry_width = (swatch + pad if colour is not None else 0) + right - left
        if x > pad and x + entry_width > width - pad:
            x, y = pad, y + line + pad
        placed.append((x, y, colour, text, left))
        x += entry_width + gap
        widest = max(widest, x - gap)
    band = Image.new("RGBA", canvas.size)
    ImageDraw.Draw(band).rectangle(
        [0, 0, min(widest + pad, width), y + line + pad], fill=(255, 255, 255, LEGEND_OPACITY)
    )
    canvas = Image.alpha_composite(canvas.convert("RGBA"), band).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for x, y, colour, text, left in placed:
        if colour is not None:
            draw.rectangle([x, y, x + swatch, y + line], fill=colour, outline=(0, 0, 0))
            x += swatch + pad
        draw.text((x - left, y - top), text, fill=(0, 0, 0), font=text_font)
    return canvas


def draw_result(result: Result, image: np.ndarray | None = None, labels: bool = True) -> np.ndarray:
    """Draw ``result`` on its image (see the module doc).

    Args:
        result: The cells to draw.
        image: The pixels (``(H, W, 3)`` uint8); read from ``result.path`` when omitted.
        labels: Write ``class score`` on a tag at each box (points get dots only, to stay readable).

    Returns:
        The overlay as an ``(H, W, 3)`` uint8 array.

    """
    pixels = read_image(result.path) if image is None else image
    canvas = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    scale = max(1.0, max(canvas.size) / 640)
    text_font = font(int(round(11 * scale)))
    width = max(1, int(round(2 * scale)))
    radius = 3 * scale
    cells, boxed = result.cells, result.cells.has_box
    scores = np.full(len(cells), np.nan) if cells.scores is None else cells.scores  # none: an image classified whole
    for index, (label, score) in enumerate(zip(cells.labels, scores, strict=True)):
        colour = class_color(int(label))
        if boxed[index]:
            x1, y1, x2, y2 = cells.boxes[index]
            draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
            if labels:
                name = result.classes[label] if label >= 0 else "?"
                _tag(draw, (x1, y1), f"{name} {score:.2f}", colour, text_font, canvas.height)
        else:
            x, y = cells.centres[index]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour, outline=(255, 255, 255))
    if result.classified_whole:
        found = [(class_color(i), f"{result.classes[i]} {result.image_scores[i]:.2f}") for i in result.image_labels]
    else:
        counts = result.counts().items()
        found = [(class_color(index), f"{name} {count}") for index, (name, count) in enumerate(counts) if count]
    canvas = _legend(canvas, found or [(None, "no cells found")], text_font)
    return np.asarray(canvas)
