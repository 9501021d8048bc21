"""The README tells the truth: it starts with the commands CI runs; its formats table matches the registry."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from cytolens.io.registry import FORMATS, format_module

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_starts_with_the_install_and_test_commands_that_ci_runs() -> None:
    block = re.match(r"# [^\n]+\n+```bash\n(.*?)```", README, re.S)
    assert block, "README.md starts with a fenced bash block of commands"
    install, test = [line for line in block.group(1).splitlines() if line.strip()]  # .ci/run runs these two
    assert install.startswith('pip install -e ".[test]" && cytolens ')
    assert test == "python -m pytest -q"


def test_readme_formats_table_matches_the_registry() -> None:
    rows = re.findall(r"^\| `([\w-]+)` \| [^|]+ \| (yes|no) \| (yes|no) \| ([^|]+) \|$", README, re.M)
    assert [name for name, *_ in rows] == list(FORMATS)
    for name, reads, writes, holds in rows:
        module = format_module(name)
        held = [field.name.replace("_", " ") for field in dataclasses.fields(module.CAPABILITIES)]
        held = [kind for kind in held if getattr(module.CAPABILITIES, kind.replace(" ", "_"))]
        assert (reads == "yes", writes == "yes") == (hasattr(module, "read"), hasattr(module, "write")), name
        assert holds.strip().split(", ") == held, name
