"""Option definitions shared by the verbs, as ``Annotated`` types.

A verb declares ``data: DataOption`` (required) or ``split: SplitOption = None`` (optional, with
its default after ``=``), so that the same option has the same name, short flag and help everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from cytolens.io.registry import FORMATS

FormatName = Literal[tuple(FORMATS)]
"""An annotation format name from the registry (Typer offers them as choices)."""

DataOption = Annotated[
    Path,
    typer.Option("--data", "-d", help="A dataset spec file (YAML), or a data folder or file read with --format."),
]
FormatOption = Annotated[
    FormatName | None, typer.Option("--format", "-f", help="Annotation format of a data folder or file.")
]
SplitOption = Annotated[str | None, typer.Option("--split", "-s", help="Use only this split (e.g. train, val, test).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout instead of a table.")]
DeviceOption = Annotated[str, typer.Option("--device", help="Where to compute: auto, cpu, cuda, cuda:N or mps.")]
BackendOption = Annotated[
    Literal["auto", "torch", "onnx", "openvino"],
    typer.Option(
        "--backend",
        help="Run box and point detectors with torch, onnx (ONNX Runtime, CPU), openvino (OpenVINO, CPU), or auto "
        "(the fastest of these that is installed and runs the model).",
    ),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder or file.")]
PassesOption = Annotated[
    int, typer.Option("--passes", min=2, help="Monte-Carlo dropout passes per image, the plain one included.")
]
DropoutOption = Annotated[
    float | None,
    typer.Option(
        "--dropout",
        min=0.0,
        max=1.0,
        help="Dropout probability in the model's heads during the passes, above 0 and below 1 (default: the model's "
        "own; 0.1 for a model trained without head dropout, as every bundled one).",
    ),
]
AlphaOption = Annotated[
    float,
    typer.Option("--alpha", min=0.0, max=1.0, help="A cell whose class consistency Uc is at most this is uncertain."),
]
BetaOption = Annotated[
    float,
    typer.Option(
        "--beta", min=0.0, max=1.0, help="A cell whose detection consistency Ud is at most this is uncertain."
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Local processes running images or slide tiles (a Dask LocalCluster when above 1); results are the "
        "same, in the same order, as with 1.",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Address of a running Dask scheduler (e.g. tcp://10.0.0.5:8786) to send images or slide tiles to, "
        "instead of local processes.",
    ),
]
FlipsOption = Annotated[
    bool,
    typer.Option(
        "--flips",
        help="Point models: average each tile's maps over its mirrored views (test-time flips; four times the work).",
    ),
]
