"""Example images shipped with the package, so the first command works without any download.

``bccd/`` holds three BCCD blood-smear images with their Pascal VOC boxes (MIT licence, see
``bccd/LICENSE``).
"""

from __future__ import annotations

from pathlib import Path


def path() -> Path:
    """The folder of the bundled BCCD example, in Pascal VOC layout (read it with format ``voc``)."""
    return Path(__file__).with_name("bccd")
