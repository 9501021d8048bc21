"""Imports point one way: each package imports only the packages below it (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_layers_contract_holds():
    # In a child process: import-linter configures logging with dictConfig, which would disable our loggers here.
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"
    )
    checked = subprocess.run([sys.executable, "-c", code, str(PYPROJECT)], capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
