"""Shared fixtures: the real datasets in ``../shared/datasets`` (or ``$CYTOLENS_DATASETS``).

Tests that need a dataset skip when it is absent, unless ``CYTOLENS_REQUIRE_DATASETS=1`` (set by
``.ci/run``), in which case they fail. No test touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("CYTOLENS_DATASETS", REPO.parent / "shared" / "datasets"))


def dataset_path(name: str) -> Path:
    """Path of a shared dataset folder; skips (or fails under CI) when it is absent."""
    path = DATASETS / name
    if not path.is_dir():
        message = f"dataset {name!r} not found at {path} (set CYTOLENS_DATASETS)"
        if os.environ.get("CYTOLENS_REQUIRE_DATASETS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path_factory, monkeypatch):
    """Keep ONNX exports made by tests out of the user's cache."""
    monkeypatch.setenv("CYTOLENS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "model-cache"))


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (small models gain nothing from more), restoring the setting after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def bccd() -> Path:
    return dataset_path("bccd")


@pytest.fixture
def bccd_txl() -> Path:
    """BCCD-TXL: 221 BCCD images with complete boxes (YOLO layout; its ``data.yaml`` names the splits)."""
    return dataset_path("bccd-txl")


@pytest.fixture
def chula() -> Path:
    return dataset_path("chula-rbc-12")


@pytest.fixture
def crchisto() -> Path:
    return dataset_path("crchisto")


@pytest.fixture
def erythrocytesidb() -> Path:
    return dataset_path("erythrocytesidb")


@pytest.fixture
def cric() -> Path:
    return dataset_path("cric-cervical")
