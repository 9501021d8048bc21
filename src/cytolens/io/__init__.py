"""Reading and writing images and annotation formats."""

from cytolens.io.images import image_size, list_images, read_image
from cytolens.io.registry import FORMATS, capabilities, read_dataset, write_dataset

__all__ = ["FORMATS", "capabilities", "image_size", "list_images", "read_dataset", "read_image", "write_dataset"]
