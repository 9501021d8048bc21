import numpy as np
import pytest
import tifffile
from PIL import Image

from cytolens.errors import DataError
from cytolens.io.images import image_size, list_images, read_image


def _pattern(height=6, width=8):
    """An image whose every pixel differs, so orientation mistakes show."""
    values = np.arange(height * width * 3, dtype=np.uint8).reshape(height, width, 3)
    return values


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_lossless_formats_read_exactly(tmp_path, suffix):
    pixels = _pattern()
    path = tmp_path / f"image{suffix}"
    Image.fromarray(pixels).save(path)
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, pixels)
    assert image_size(path) == (8, 6)


def test_jpeg_is_rgb_and_writable(tmp_path):
    path = tmp_path / "image.jpg"
    Image.fromarray(_pattern(16, 24)).save(path, quality=95)
    out = read_image(path)
    assert out.shape == (16, 24, 3)
    out[0, 0, 0] = 1  # callers may modify the array


def test_grayscale_and_rgba(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = read_image(tmp_path / "grey.png")
    assert out.shape == (6, 8, 3) and (out[..., 0] == grey).all() and (out[..., 2] == grey).all()
    rgba = np.dstack([_pattern(), np.full((6, 8), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), _pattern())


def test_16_bit_tiff_scaled_to_8_bit(tmp_path):
    full = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", full)
    np.testing.assert_array_equal(read_image(tmp_path / "full.tif")[..., 0], [[0, 255], [100, 200]])
    twelve_bit = np.array([[0, 4095]], dtype=np.uint16)  # a 12-bit camera in a 16-bit file
    tifffile.imwrite(tmp_path / "twelve.tif", twelve_bit)
    np.testing.assert_array_equal(read_image(tmp_path / "twelve.tif")[..., 0], [[0, 255]])
    rgb16 = np.zeros((4, 5, 3), dtype=np.uint16)
    rgb16[..., 1] = 65535
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    out = read_image(tmp_path / "rgb16.tif")
    assert out.shape == (4, 5, 3) and (out[..., 1] == 255).all() and (out[..., 0] == 0).all()


@pytest.mark.parametrize(
    ("orientation", "transform"),
    [(3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1))],
)
def test_exif_orientation_applied(tmp_path, orientation, transform):
    pixels = _pattern()
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    expected = transform(pixels)
    np.testing.assert_array_equal(read_image(path), expected)
    assert image_size(path) == (expected.shape[1], expected.shape[0])


def test_bad_files_raise_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="not found") as missing:
        read_image(tmp_path / "missing.png")
    assert str(tmp_path / "missing.png") in str(missing.value)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match="cannot decode") as error:
        read_image(broken)
    assert "\n" not in str(error.value) and "broken.jpg" in str(error.value)
    with pytest.raises(DataError, match="cannot decode"):
        image_size(broken)


def test_list_images_sorted_and_filtered(tmp_path):
    for name in ["b.png", "a.JPG", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]


def test_broken_symlink_is_reported_not_skipped(tmp_path):
    from cytolens.inference.sources import expand_inputs

    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(DataError, match="broken symbolic link"):
        list_images(tmp_path)
    assert expand_inputs([tmp_path]) == [tmp_path / "gone.png"]  # predict reports it as an unreadable image
    with pytest.raises(DataError, match="gone.png"):
        read_image(tmp_path / "gone.png")
