"""cytolens: find, classify and count cells in microscopy images.

For research use only; not for diagnosis.
"""

__version__ = "0.1.0"
