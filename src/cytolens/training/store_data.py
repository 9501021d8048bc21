"""An annotation store as training data (``cytolens train --data STORE``): its labelled images and the model to
fine-tune.

- Data: every labelled image of the store (labels saved at least once) with its current labels
  (:func:`~cytolens.store.dataset.read_dataset`); a fraction of them, drawn with the recipe's seed, validates
  (none when that would leave no image for validation or for training: then every image trains).
- Unlabelled cells: a reviewer may leave cells unlabelled, so the images count as partially labelled: the
  task's ``ignore_unlabelled_cells`` is set (box and point models leave stained pixels outside every label out
  of the loss; a patch classifier is only ever taught the labelled cells).
- Initial model: ``--init`` when given; else the store's current model (the model version recorded last, e.g. by
  ``cytolens rank --store``) when it is a single model of the recipe's task whose file is still there with the
  recorded sha256; else the recipe's ``init``. One note says which, and why not the store's model.
- Classes: the initial model's, when they hold every labelled class (its class heads are kept); else the
  labelled classes, sorted.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cytolens.data.annotations import Dataset
from cytolens.data.splits import ratio_split
from cytolens.errors import DataError
from cytolens.models.checkpoint import read_card
from cytolens.models.registry import resolve_model
from cytolens.progress import NOTE
from cytolens.store.database import Store
from cytolens.store.dataset import open_source, read_dataset
from cytolens.store.rounds import model_version_file, newest_model_version
from cytolens.training.recipe import Recipe

log = logging.getLogger(__name__)

VAL_FRACTION = 0.2
"""The fraction of a store's labelled images that validates, by default."""


def current_model(store: Store, task: str) -> tuple[Path | None, str]:
    """The store's current model, if it can initialise a ``task`` model, and what to say about it.

    Returns:
        The model file (``None`` if there is none, or it is a pipeline, of another task, moved or changed), and
        a description: the model version, or why it cannot be used.

    """
    version = newest_model_version(store)
    if version is None:
        return None, "the store records no model"
    described = f"the store's current model {version.name} (model version {version.id})"
    if "pipeline" in version.card:
        return None, f"{described} is a pipeline, not a single model"
    if version.card.get("task") != task:
        return None, f"{described} is a {version.card.get('task')} model, not a {task} model"
    try:
        return model_version_file(version), described
    except DataError as error:
        return None, f"{described} cannot be read ({error})"


def _initial_model(recipe: Recipe, store: Store, init_given: bool) -> str:
    """The recipe's ``init`` for training from ``store`` (see the module's docstring), said in one note."""
    if init_given:
        log.log(NOTE, "fine-tuning %s (--init), not the store's current model", recipe.init)
        return recipe.init
    path, described = current_model(store, recipe.task)
    if path is not None:
        log.log(NOTE, "fine-tuning %s", described)
        return str(path)
    log.log(NOTE, "%s: training from the recipe's init %s", described, recipe.init)
    return recipe.init


def _classes(dataset: Dataset, init: str) -> Dataset:
    """The dataset in the initial model's classes when they hold every labelled class, else as it is."""
    if init in ("imagenet", "none"):
        return dataset
    classes = list(read_card(resolve_model(init)).card.classes)
    return dataset.relabel(classes) if set(dataset.classes) <= set(classes) else dataset


def _with_validation(dataset: Dataset, fraction: float, seed: int) -> Dataset:
    """The dataset with splits ``train`` and ``val`` (a seeded ``fraction``), or none when a part would be empty."""
    ids = [image.image_id for image in dataset.images]
    splits = ratio_split(ids, {"train": 1 - fraction, "val": fraction}, seed)
    if splits["train"] and splits["val"]:
        return dataclasses.replace(dataset, splits=splits)
    log.warning("%s: %d labelled images are too few to set %g of them aside: training on all, without validation",
                dataset.name, len(ids), fraction)
    return dataset


def store_training(
    recipe: Recipe, root: str | Path, init_given: bool = False, val_fraction: float = VAL_FRACTION
) -> tuple[Recipe, Dataset]:
    """The recipe and data to train on the store that ``recipe.data`` names (see the module's docstring).

    Args:
        recipe: The recipe; its ``data`` is the store (a SQLite file or a database URL).
        root: The folder the store's image paths are relative to.
        init_given: Whether the recipe's ``init`` was asked for on the command line (it then wins over the
            store's current model).
        val_fraction: The fraction of the labelled images that validates (between 0 and 1).

    Returns:
        The recipe (its ``data`` the store's name, without a password; splits ``train`` and ``val``, or none;
        its ``init``; the task's ``ignore_unlabelled_cells`` set) and the data, for
        :func:`cytolens.training.train.train`.

    Raises:
        DataError: If the store is missing or cannot be opened, or holds no labelled images.

    """
    with open_source(recipe.data, root) as store:
        dataset = read_dataset(store)
        name = store.name
        if not len(dataset):
            raise DataError(name, "holds no labelled images to train on (labels are saved by cytolens review)")
        init = _initial_model(recipe, store, init_given)
    dataset = _with_validation(_classes(dataset, init), val_fraction, recipe.seed)
    validated = bool(dataset.splits)
    changes = {
        "data": name,
        "format": None,
        "train_split": "train" if validated else None,
        "val_split": "val" if validated else None,
        "init": init,
    }
    settings = getattr(recipe, recipe.task)
    if any(field.name == "ignore_unlabelled_cells" for field in dataclasses.fields(settings)):
        changes[recipe.task] = dataclasses.replace(settings, ignore_unlabelled_cells=True)
    return dataclasses.replace(recipe, **changes), dataset
