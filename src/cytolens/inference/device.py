"""Choosing where to compute: CUDA when present, else the CPU, unless the user says otherwise."""

from __future__ import annotations

import torch

from cytolens.errors import CytolensError


def resolve_device(device: str = "auto") -> torch.device:
    """The torch device for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``).

    Raises:
        CytolensError: If the device is unknown or not available.

    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise CytolensError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise CytolensError(f"device {device!r} requested but CUDA is not available on this machine")
    return chosen
