"""docs/formats.md must say what each format module actually does."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from cytolens.io.registry import FORMATS, Capabilities, format_module

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"


def _table() -> dict[str, dict[str, str]]:
    """Rows of the format table, by format name, as column header to cell text."""
    lines = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[1:]
    return {row[0].strip("`"): dict(zip(header, row, strict=True)) for row in rows}


def test_table_lists_every_format() -> None:
    assert list(_table()) == list(FORMATS)


@pytest.mark.parametrize("name", FORMATS)
def test_table_row_matches_the_module(name: str) -> None:
    row, module = _table()[name], format_module(name)
    expected = {"read": hasattr(module, "read"), "write": hasattr(module, "write")}
    for field in fields(Capabilities):
        expected[field.name.replace("_", " ")] = getattr(module.CAPABILITIES, field.name)
    assert {column: row[column] for column in expected} == {
        column: "yes" if value else "no" for column, value in expected.items()
    }
    assert row["coordinate convention"]
