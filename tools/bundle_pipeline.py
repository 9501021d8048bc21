r"""Bundle a detector and a patch classifier as one pipeline file, with its held-out figures in the pipeline's card.

Both models' weights are stored as float16 (read back as float32), and the figures are measured on the file as
written: on the whole ``--split`` (``metrics[split]``) and on its first ``--sample`` images
(``metrics["sample"]``, with their ids), which the tests reproduce quickly. Detections on cells that partial
labels leave out count neither way (``--ignore-unlabelled``, as ``cytolens evaluate`` does).

Usage (the bundled ``rbc-morphology``; see configs/rbc-cells.yaml and configs/chula-cells.yaml)::

    python tools/bundle_pipeline.py runs/rbc-cells/detector.pt runs/chula-cells/chula-cells-tuned.pt \
        rbc-morphology --data configs/chula-split.yaml --split test --radius 12 --ignore-unlabelled
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from cytolens.inference.evaluate import evaluate_model
from cytolens.inference.model import load_model
from cytolens.io.spec import load_data
from cytolens.models.checkpoint import StoredModel, load_network, read_card, save_checkpoint, save_pipeline
from cytolens.models.registry import BUNDLED_DIR

NOTICE = "For research use only, not for diagnosis."


def half(path: Path, folder: Path) -> StoredModel:
    """``path`` with float16 weights (written into ``folder``), as :func:`read_card` reads it back."""
    network, card = load_network(path)
    out = folder / path.name
    save_checkpoint(out, network, replace(card, notice=NOTICE), half=True)
    return read_card(out)


def main() -> None:
    """Bundle the pipeline as the command line says."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("detector", type=Path)
    parser.add_argument("classifier", type=Path)
    parser.add_argument("name", help="bundled model name (file stem)")
    parser.add_argument("--data", required=True, help="held-out data (spec or folder)")
    parser.add_argument("--format", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--radius", type=float, default=None, help="point matching radius")
    parser.add_argument("--ignore-unlabelled", action="store_true")
    parser.add_argument("--sample", type=int, default=4, help="images of the quick sample the tests reproduce")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: the bundled models' NAME.pt)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = args.out or BUNDLED_DIR / f"{args.name}.pt"
    scratch = out.parent / f".{out.stem}-parts"
    scratch.mkdir(exist_ok=True)
    detector, classifier = half(args.detector, scratch), half(args.classifier, scratch)
    save_pipeline(out, detector, classifier, notice=NOTICE)
    model = load_model(out, device="cpu")
    truth = load_data(args.data, args.format, args.split)
    metrics = {}
    for key, data in (("sample", replace(truth, images=truth.images[: args.sample])), (args.split, truth)):
        figures, _ = evaluate_model(model, data, args.radius, ignore_unlabelled=args.ignore_unlabelled)
        figures.pop("details", None)
        metrics[key] = {"data": truth.name, "split": args.split, "radius": args.radius, **figures}
        if key == "sample":
            metrics[key]["images"] = [image.image_id for image in data.images]
        print(key, json.dumps(metrics[key], indent=2, default=str))
    save_pipeline(out, detector, classifier, metrics=metrics, notice=NOTICE)
    for part in scratch.iterdir():
        part.unlink()
    scratch.rmdir()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
