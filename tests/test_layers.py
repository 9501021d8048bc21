"""Imports point one way: each package imports only the packages below it (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_layers_contract_holds():
    assert lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True) == 0
