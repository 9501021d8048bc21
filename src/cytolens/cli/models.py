"""``cytolens models``: the bundled trained models and the registered architectures, or what one model file is."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cytolens.cli.options import JsonOption

if TYPE_CHECKING:
    from cytolens.models.card import ModelCard
    from cytolens.models.checkpoint import StoredModel, StoredPipeline

log = logging.getLogger(__name__)


def _card_entry(card: ModelCard) -> dict[str, Any]:
    """What a model card says about a model: task, architecture, classes, training data and licence, figures."""
    from cytolens.models.card import DataRecord

    train = card.provenance.data.get("train") or DataRecord()
    return {
        "task": card.task,
        "architecture": card.architecture,
        "classes": list(card.classes),
        "data": train.name,
        "licence": train.licence,
        "metrics": card.metrics,
        "int8": None if card.int8 is None else card.int8.about,
    }


def _entry(name: str, stored: StoredModel | StoredPipeline) -> dict[str, Any]:
    """A model's or a pipeline's entry: a pipeline gives the task of its detector, the classes and training data of
    its classifier, its own figures, and each model's entry under ``stages``.
    """
    from cytolens.models.checkpoint import StoredPipeline

    if not isinstance(stored, StoredPipeline):
        return {"name": name, "kind": "model", **_card_entry(stored.card)}
    detector, classifier = stored.detector.card, stored.classifier.card
    return {
        "name": name,
        "kind": "pipeline",
        **_card_entry(classifier),
        "task": detector.task,
        "architecture": f"{detector.architecture} + {classifier.architecture}",
        "metrics": stored.card.metrics,
        "stages": {"detector": _card_entry(detector), "classifier": _card_entry(classifier)},
    }


def _task(entry: dict[str, Any]) -> str:
    """The task column: ``points``, or ``points -> patches`` for a pipeline."""
    return f"{entry['task']} -> patches" if entry["kind"] == "pipeline" else entry["task"]


def _describe_one(model: str, as_json: bool) -> None:
    """Print what the model or pipeline file ``model`` (or bundled name) is."""
    from cytolens.cli.output import print_json, print_table
    from cytolens.models.checkpoint import StoredPipeline, read_stored
    from cytolens.models.registry import resolve_model

    stored = read_stored(resolve_model(model))
    entry = _entry(model, stored)
    if as_json:
        print_json(entry)
        return
    what = f"pipeline: {stored.describe()}" if isinstance(stored, StoredPipeline) else "model"
    rows = [
        ["kind", what],
        ["task", _task(entry)],
        ["architecture", entry["architecture"]],
        ["classes", ", ".join(entry["classes"])],
        ["trained on", f"{entry['data']} ({entry['licence']})"],
        *([name, value] for name, value in entry["metrics"].items() if not isinstance(value, dict | list)),
    ]
    if entry["int8"] is not None:
        about = entry["int8"]
        on = f" on {about['images']} images of {about['data']}" if {"images", "data"} <= about.keys() else ""
        rows.append(["int8", f"calibrated{on}; runs in int8 with --backend openvino or onnx"])
    print_table(model, ["", ""], rows)


def models(
    model: Annotated[
        str | None,
        typer.Argument(help="Describe this model or pipeline file (or bundled name) instead.", metavar="[MODEL]"),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the bundled models (task, classes, training data, metrics) and the architectures to train; or say what
    one model file is (a model, or a pipeline of a detector and a patch classifier).

    A bundled model file that does not load (damaged, or with unusable metadata) is left out with a warning.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import ModelError
    from cytolens.models.checkpoint import read_stored
    from cytolens.models.registry import architectures, bundled_models

    if model is not None:
        _describe_one(model, as_json)
        return
    bundled = []
    for name, path in bundled_models().items():
        try:
            bundled.append(_entry(name, read_stored(path)))
        except ModelError as error:
            log.warning("%s; not listed", error)
    archs = [{"name": a.name, "task": a.task, "description": a.description} for a in architectures().values()]
    if as_json:
        print_json({"models": bundled, "architectures": archs})
        return
    rows = [[m["name"], _task(m), ", ".join(m["classes"]), f"{m['data']} ({m['licence']})"] for m in bundled]
    print_table("Bundled models", ["name", "task", "classes", "trained on"], rows)
    print_table("Architectures", ["name", "task", "description"], [list(a.values()) for a in archs])
