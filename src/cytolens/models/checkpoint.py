"""Self-describing checkpoints: weights plus a model card stored as plain JSON; and pipeline files.

A checkpoint file is a ``torch.save`` of ``{"cytolens": FORMAT_VERSION, "card": "<JSON text>", "state_dict":
{...}}``, the card being :meth:`ModelCard.to_json <cytolens.models.card.ModelCard.to_json>`. It is read through
:func:`load_plain` (``torch.load(..., weights_only=True)`` after checking the zip archive's CRCs) so that opening
a file from a stranger never runs code and a damaged file is refused, not used; the card is checked field by
field when read and before it is written (:meth:`ModelCard.from_dict <cytolens.models.card.ModelCard.from_dict>`).
Format 1 files (metadata as a mapping under ``"meta"``, in the old flat layout) are read too.

A pipeline file holds a detector and the patch classifier that classifies the cells it finds (see
:mod:`cytolens.inference.pipeline`), each stored as a checkpoint's contents, and the pipeline's own card
(:class:`PipelineCard`, JSON text)::

    {"cytolens": PIPELINE_FORMAT, "pipeline": "<JSON text>",
     "detector": {"cytolens": 2, "card": "<JSON text>", "state_dict": {...}}, "classifier": {...}}

It is read like a checkpoint (:func:`load_plain`, then every entry checked: nothing else may be in it), so
``--model`` takes either (:func:`read_stored` says which a file holds); :func:`save_pipeline` writes one.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from cytolens._version import __version__
from cytolens.errors import ModelError
from cytolens.io.atomic import atomic_write
from cytolens.models.card import ModelCard
from cytolens.models.registry import build_architecture

FORMAT_VERSION = 2
"""2: the model card as JSON text under ``card``; 1: metadata as a mapping under ``meta`` (the old flat layout)."""
PIPELINE_FORMAT = 3
"""Pipeline files: a detector and a patch classifier, each as a format-2 checkpoint's contents, and a pipeline card."""
PIPELINE_ENTRIES = ("cytolens", "pipeline", "detector", "classifier")
"""What a pipeline file holds, and nothing else."""
CLASSIFIER_TASK = "patches"
"""The task of a pipeline's classifier (its detector is of any other task)."""


class StoredModel(NamedTuple):
    """A model as a file stores it: its checked card and its weights (as stored: float16 if ``card.stored_half``)."""

    card: ModelCard
    state: dict[str, torch.Tensor]


@dataclass(frozen=True)
class PipelineCard:
    """What a pipeline file says about the pipeline as a whole (its two models' cards say the rest).

    Attributes:
        metrics: Figures of the pipeline measured on held-out data (free-form).
        notice: A notice shown with it (e.g. research use only).
        cytolens_version: The cytolens that wrote the file.

    """

    metrics: dict[str, Any] = field(default_factory=dict)
    notice: str | None = None
    cytolens_version: str | None = None


@dataclass(frozen=True)
class StoredPipeline:
    """A pipeline file's contents: the detector, the classifier of its cells, and the pipeline's own card."""

    detector: StoredModel
    classifier: StoredModel
    card: PipelineCard

    def describe(self) -> str:
        """``points detector (point-fcn-lite0) + patch classifier (lite-classifier)``."""
        detector, classifier = self.detector.card, self.classifier.card
        return f"{detector.task} detector ({detector.architecture}) + patch classifier ({classifier.architecture})"


def _card(path: str | Path, card: ModelCard | dict[str, Any]) -> ModelCard:
    """``card`` checked as if read back from ``path`` (a mapping, in either layout, is read into a card)."""
    return ModelCard.from_dict(card.to_dict() if isinstance(card, ModelCard) else card, path)


def _write(path: str | Path, card: ModelCard, state: dict[str, torch.Tensor]) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save({"cytolens": FORMAT_VERSION, "card": card.to_json(), "state_dict": state}, handle)


def save_checkpoint(
    path: str | Path, model: nn.Module, card: ModelCard | dict[str, Any], half: bool = False
) -> None:
    """Write weights and model card atomically.

    Args:
        path: Output ``.pt`` file.
        model: The model (its ``state_dict`` is saved).
        card: Its model card; a mapping (:meth:`ModelCard.to_dict`'s layout or the old flat one) is read into
            one. It is checked first, so that no file is written that cannot be read back.
        half: Store floating-point weights as float16 (halves the file; they are cast back on load).

    Raises:
        ModelError: Naming ``path``, if the card does not pass :meth:`ModelCard.from_dict`.

    """
    card = replace(_card(path, card), cytolens_version=__version__, stored_half=half)
    state = {
        key: (value.half() if half and value.is_floating_point() else value).detach().cpu().clone()
        for key, value in model.state_dict().items()
    }
    _write(path, card, state)


def save_card(path: str | Path, card: ModelCard, state: dict[str, torch.Tensor]) -> None:
    """Write weights as stored (``state`` from :func:`read_card`) with another card, atomically; the card is checked
    first (:meth:`ModelCard.from_dict`), so that no file is written that cannot be read back, and names this version
    of cytolens as its writer.
    """
    _write(path, replace(_card(path, card), cytolens_version=__version__), state)


def update_metadata(path: str | Path, changes: dict[str, Any]) -> None:
    """Rewrite a checkpoint's card with ``changes`` merged in, keeping its weights as stored.

    Args:
        path: The checkpoint.
        changes: Card entries (:meth:`ModelCard.to_dict`'s layout; entries of the old flat layout are moved to
            their sections); a section given as a mapping is merged into the card's field by field.

    """
    card, state = read_card(path)
    merged = card.to_dict()
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if both else value
    _write(path, _card(path, merged), state)


def _check_archive(path: Path) -> None:
    """Refuse a file that is not a complete zip archive (``torch.save``'s format) or whose data fail their CRCs."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as error:
        raise ModelError(f"{path}: not a loadable checkpoint (truncated, or not a zip archive: {error})") from None
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({error.strerror or error})") from None
    if damaged is not None:
        raise ModelError(f"{path}: damaged: its entry {damaged} fails its CRC check")


def load_plain(path: str | Path) -> Any:
    """What a ``torch.save`` file holds, read without running code from it, after checking the file is intact.

    Only tensors and plain data (dicts, lists, numbers, strings) are unpickled (``torch.load(...,
    weights_only=True)``), so a file built to run code when unpickled is refused, not run. This is the
    one loader of torch files: cytolens checkpoints and Lightning's training checkpoints (``--resume``).

    Raises:
        ModelError: Naming the file, if it is missing, truncated, damaged (a zip CRC fails), or holds objects
            other than tensors and plain data.

    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    _check_archive(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        found = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        raise ModelError(f"{path}: refused: it holds objects other than tensors and plain data ({found})") from None
    except Exception as error:  # torch raises RuntimeError, EOFError, OSError... on bad files
        raise ModelError(f"{path}: not a loadable checkpoint ({error.__class__.__name__})") from None


def _stored_card(path: Path, payload: dict[str, Any]) -> Any:
    """The card data a checkpoint of a format this cytolens reads holds (format 2: JSON text; 1: a mapping)."""
    version = payload.get("cytolens", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        problem = f"checkpoint format {version!r:.20} is not one this cytolens reads (it reads up to {FORMAT_VERSION})"
        raise ModelError(f"{path}: {problem}")
    key = "meta" if version < 2 else "card"
    if key not in payload:
        raise ModelError(f"{path}: not a cytolens checkpoint (no {key})")
    if version < 2:
        return payload["meta"]
    try:
        return json.loads(payload["card"])
    except (TypeError, ValueError) as error:
        raise ModelError(f"{path}: its model card is not JSON text ({error})") from None


def _stored_model(path: Path, payload: Any) -> StoredModel:
    """The model a checkpoint's contents hold (``path`` names it in errors), card and weights checked."""
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ModelError(f"{path}: not a cytolens checkpoint (no state_dict)")
    card = _stored_card(path, payload)
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ModelError(f"{path}: checkpoint state_dict must map names to tensors")
    return StoredModel(ModelCard.from_dict(card, path), state)


def check_pipeline(source: str | Path, detector: ModelCard, classifier: ModelCard) -> None:
    """Refuse a detector and classifier that do not make a pipeline.

    Raises:
        ModelError: Naming ``source``, if the detector is a patch classifier (it finds no cells), the classifier is
            not one, or the detector marks cells by points and the classifier's card gives no patch side to crop
            around them.

    """
    if detector.task == CLASSIFIER_TASK:
        raise ModelError(f"{source}: {detector.architecture} classifies patches, it finds no cells: give a detector")
    if classifier.task != CLASSIFIER_TASK:
        raise ModelError(f"{source}: the classifier must be a patch classifier, not a {classifier.task} model")
    if detector.task != "boxes" and (classifier.patch is None or classifier.patch.side is None):
        raise ModelError(
            f"{source}: the classifier's model card gives no patch side (patch.side) to crop around the cells "
            f"that a {detector.task} detector marks"
        )


def _pipeline_card(path: Path, text: Any) -> PipelineCard:
    """The pipeline card stored as JSON text, every entry checked."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{path}: its pipeline card is not JSON text ({error})") from None
    known = [item.name for item in fields(PipelineCard)]
    if not isinstance(data, dict) or any(key not in known for key in data):
        raise ModelError(f"{path}: its pipeline card must be a mapping of {', '.join(known)}, not {data!r:.60}")
    if not isinstance(data.get("metrics", {}), dict):
        raise ModelError(f"{path}: pipeline metrics must be a mapping, not {data['metrics']!r:.60}")
    for name in ("notice", "cytolens_version"):
        if not isinstance(data.get(name), str | None):
            raise ModelError(f"{path}: pipeline {name} must be text, not {data[name]!r:.60}")
    return PipelineCard(**data)


def _stored_pipeline(path: Path, payload: dict[str, Any]) -> StoredPipeline:
    """The pipeline a pipeline file's contents hold, every entry checked."""
    version = payload.get("cytolens")
    if version != PIPELINE_FORMAT:
        raise ModelError(f"{path}: pipeline format {version!r:.20} is not one this cytolens reads ({PIPELINE_FORMAT})")
    unknown = [key for key in payload if key not in PIPELINE_ENTRIES]
    missing = [key for key in PIPELINE_ENTRIES if key not in payload]
    if unknown or missing:
        found = f"unknown entries {', '.join(map(repr, unknown))}" if unknown else f"no {', '.join(missing)}"
        raise ModelError(f"{path}: not a cytolens pipeline file: {found:.100} (it holds {', '.join(PIPELINE_ENTRIES)})")
    detector = _stored_model(Path(f"{path} (detector)"), payload["detector"])
    classifier = _stored_model(Path(f"{path} (classifier)"), payload["classifier"])
    check_pipeline(path, detector.card, classifier.card)
    return StoredPipeline(detector, classifier, _pipeline_card(path, payload["pipeline"]))


def read_stored(path: str | Path) -> StoredModel | StoredPipeline:
    """Read a checkpoint or a pipeline file without running any code from it, checking everything in it.

    Raises:
        ModelError: If the file is missing, damaged, unsafe to unpickle, neither a cytolens checkpoint nor a
            pipeline file, holds entries it should not, or a card does not pass :meth:`ModelCard.from_dict`.

    """
    path = Path(path)
    payload = load_plain(path)
    if isinstance(payload, dict) and "pipeline" in payload:
        return _stored_pipeline(path, payload)
    return _stored_model(path, payload)


def read_card(path: str | Path) -> StoredModel:
    """Read a checkpoint's model card and weights without running any code from it, checking both.

    Raises:
        ModelError: If the file is missing, damaged, not a cytolens checkpoint (a pipeline file is named as one),
            unsafe to unpickle, or its card does not pass :meth:`ModelCard.from_dict`.

    """
    stored = read_stored(path)
    if isinstance(stored, StoredPipeline):
        raise ModelError(f"{path}: a pipeline ({stored.describe()}), not a single model")
    return stored


def save_pipeline(
    path: str | Path,
    detector: StoredModel,
    classifier: StoredModel,
    metrics: dict[str, Any] | None = None,
    notice: str | None = None,
) -> None:
    """Write a pipeline file atomically: a detector and the patch classifier of the cells it finds.

    Args:
        path: Output file.
        detector: The detector, as :func:`read_card` reads it (its weights kept as stored).
        classifier: The patch classifier, likewise.
        metrics: Figures of the pipeline (plain JSON data).
        notice: A notice shown with the pipeline.

    Raises:
        ModelError: Naming ``path``, if the two do not make a pipeline (see :func:`check_pipeline`) or ``metrics``
            is not plain JSON data.

    """
    check_pipeline(path, detector.card, classifier.card)
    try:
        card = PipelineCard(json.loads(json.dumps(metrics or {})), notice, __version__)
    except (TypeError, ValueError) as error:
        raise ModelError(f"{path}: pipeline metrics are not plain JSON data ({error})") from None
    parts = {
        role: {"cytolens": FORMAT_VERSION, "card": stored.card.to_json(), "state_dict": stored.state}
        for role, stored in (("detector", detector), ("classifier", classifier))
    }
    with atomic_write(path, "wb") as handle:
        torch.save({"cytolens": PIPELINE_FORMAT, "pipeline": json.dumps(asdict(card)), **parts}, handle)


def build_described(path: str | Path, card: ModelCard, num_classes: int | None = None) -> nn.Module:
    """An untrained model as the checked ``card`` of checkpoint ``path`` describes it (architecture and kwargs).

    Args:
        path: The checkpoint, named in errors.
        card: Its model card, as :func:`read_card` returns it.
        num_classes: Classes of the model (default: those of the card).

    Raises:
        ModelError: If the architecture's builder rejects the stored kwargs.

    """
    classes = len(card.classes) if num_classes is None else num_classes
    try:
        return build_architecture(card.architecture, num_classes=classes, **{**card.kwargs, "weights": None})
    except (TypeError, ValueError, RuntimeError, ModelError) as error:  # builders reject bad arguments variously
        problem = " ".join(str(error).split()) or error.__class__.__name__
        raise ModelError(f"{path}: metadata kwargs do not build {card.architecture} ({problem:.200})") from None


def build_network(path: str | Path, stored: StoredModel) -> nn.Module:
    """Rebuild the network a stored model's card describes and load its weights (in float32), in eval mode.

    Raises:
        ModelError: Naming ``path``, if the card's kwargs do not build the architecture or the weights do not fit.

    """
    model = build_described(path, stored.card)
    state = {key: value.float() if value.is_floating_point() else value for key, value in stored.state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        problem = str(error).splitlines()[0]
        raise ModelError(f"{path}: weights do not fit {stored.card.architecture} ({problem})") from None
    return model.eval()


def load_network(path: str | Path) -> tuple[nn.Module, ModelCard]:
    """Rebuild the network a checkpoint describes and load its weights (in float32), in eval mode; and its card."""
    stored = read_card(path)
    return build_network(path, stored), stored.card
