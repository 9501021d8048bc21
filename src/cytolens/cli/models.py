"""``cytolens models``: the bundled trained models and the registered architectures."""

from __future__ import annotations

import logging

from cytolens.cli.options import JsonOption

log = logging.getLogger(__name__)


def models(as_json: JsonOption = False) -> None:
    """List the bundled models (task, classes, training data, metrics) and the architectures to train.

    A bundled model file that does not load (damaged, or with unusable metadata) is left out with a warning.
    """
    from cytolens.cli.output import print_json, print_table
    from cytolens.errors import ModelError
    from cytolens.models.card import DataRecord
    from cytolens.models.checkpoint import read_card
    from cytolens.models.registry import architectures, bundled_models

    bundled = []
    for name, path in bundled_models().items():
        try:
            card, _ = read_card(path)
        except ModelError as error:
            log.warning("%s; not listed", error)
            continue
        train = card.provenance.data.get("train") or DataRecord()
        bundled.append(
            {
                "name": name,
                "task": card.task,
                "architecture": card.architecture,
                "classes": list(card.classes),
                "data": train.name,
                "licence": train.licence,
                "metrics": card.metrics,
            }
        )
    archs = [{"name": a.name, "task": a.task, "description": a.description} for a in architectures().values()]
    if as_json:
        print_json({"models": bundled, "architectures": archs})
        return
    rows = [[m["name"], m["task"], ", ".join(m["classes"]), f"{m['data']} ({m['licence']})"] for m in bundled]
    print_table("Bundled models", ["name", "task", "classes", "trained on"], rows)
    print_table("Architectures", ["name", "task", "description"], [list(a.values()) for a in archs])
