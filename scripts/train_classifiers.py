"""Train the classifiers behind the offline image metrics, and write their model cards.

For each data set this trains :func:`ecnf.metrics.train_classifier`, writes
``<out-dir>/<name>.safetensors``, measures the real-vs-real reference values of the
metrics (test images against training images, at each sample size) and writes
``<out-dir>/<name>.md``, the model card, from the measured values alone.

    OMP_NUM_THREADS=1 python scripts/train_classifiers.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ecnf.metrics import (
    CLASSIFIER_DATASETS,
    ClassifierFeatures,
    labelled_images,
    metric_names,
    reference_statistics,
    train_classifier,
)

FILE_NAMES = {"fashion_mnist": "fmnist_classifier", "digits": "digits_classifier"}
DEFAULTS = {  # epochs, batch size, peak learning rate, reference sample sizes
    "fashion_mnist": {"epochs": 5, "batch_size": 128, "lr": 3e-3, "sizes": (1000, 5000)},
    "digits": {"epochs": 60, "batch_size": 64, "lr": 3e-3, "sizes": (297,)},
}


def hardware(device: str) -> str:
    """The CPU model and core count, and the GPU when one was used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch thread(s)"
    if device.startswith("cuda"):
        text += f", GPU {torch.cuda.get_device_name()}"
    return text


def card(
    name: str, path: Path, net: ClassifierFeatures, training: dict, reference: list[dict]
) -> str:
    """The model card, in Markdown, from the measured values."""
    keys = metric_names(net)
    fd, kid, is_ = keys["fd"], keys["kid"], keys["is"]
    config = net.model.config
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ)
    command = " ".join(filter(None, [env, "python", *map(shlex.quote, sys.argv)]))
    correct = round(training["test_accuracy"] * training["test_size"])
    widths = ", ".join(map(str, config.widths))
    rows = "\n".join(
        f"| {r['num_samples']} | {r[fd]:.4g} | {r[kid]:.3g} ± {r[kid + '_std']:.2g} | "
        f"{r[is_]:.4g} ± {r[is_ + '_std']:.2g} | {r['sample_entropy']:.4f} |"
        for r in reference
    )
    machine = {
        "name": net.name,
        "file": path.name,
        "test_accuracy": training["test_accuracy"],
        "training": training,
        "reference": {"comparison": "test vs train", "seed": 0, "values": reference},
    }
    return f"""# {net.name}

The offline feature network of the metrics {fd}, {kid} and {is_} and of the sample entropy
on `{config.dataset}` images. Its values are **not** FID / KID / IS: those need the
Inception-v3 network (`ecnf.metrics.InceptionFeatures`) and are not comparable with these.

This card was written by `scripts/train_classifiers.py` from the values it measured; do not
edit it by hand, run the script again.

## The file

- `{path.name}`: {path.stat().st_size:,} bytes, float16 weights in safetensors with a JSON
  header (architecture and training facts); loading never unpickles.
- Architecture: {len(config.widths)} blocks of 3x3 convolution, batch norm and ReLU
  (widths {widths}; 2x2 max pooling between blocks, rounding up), global average
  pooling to the {config.widths[-1]} features used by the metrics, a linear layer to
  {config.num_classes} classes. {training["num_parameters"]:,} parameters.
- Input: {config.in_channels} x {config.image_size} x {config.image_size} images in [-1, 1]
  (clamped and rounded to 256 levels before use).

## Training

- Command: `{command}`
- Data: the training split of `{config.dataset}` ({training["train_size"]:,} images);
  the test split ({training["test_size"]:,} images) was held out and used once, at the end.
- {training["epochs"]} epochs, batch {training["batch_size"]}, AdamW (weight decay 1e-4),
  one-cycle learning rate peaking at {training["lr"]:g}, seed {training["seed"]}; random
  translations{" and horizontal flips" if config.dataset == "fashion_mnist" else ""}.
- Wall time: {training["wall_time_s"]:.0f} s (training and accuracy) on {training["hardware"]},
  torch {torch.__version__}.

## Accuracy

- **Test accuracy: {100 * training["test_accuracy"]:.2f}%** ({correct:,} / {training["test_size"]:,}
  held-out test images); training accuracy {100 * training["train_accuracy"]:.2f}%.

## Reference values: real test images against real training images

What a model that samples the data distribution exactly would score with the same number
of samples (`ecnf.metrics.reference_statistics(test, train, net, sizes=..., seed=0)`):
compare a model's values with the row of its sample size. {fd} and {kid} are the floor;
{is_} and the sample entropy are those of real images (the entropy is 1 for classes in
equal numbers).

| samples | {fd} | {kid} | {is_} | sample entropy |
|---|---|---|---|---|
{rows}

KID: polynomial kernel (x.y/d + 1)^3, 100 subsets of min(1000, samples) images (when that
is the whole set, one subset and a std of 0); IS: 10 splits of the test images.

## Machine-readable values

```json
{json.dumps(machine, indent=2)}
```
"""


def run(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    defaults = DEFAULTS[dataset]
    epochs = args.epochs or defaults["epochs"]
    name = FILE_NAMES[dataset]
    path = args.out_dir / f"{name}.safetensors"
    print(f"[{dataset}] training {epochs} epochs -> {path}", flush=True)
    training = train_classifier(
        dataset,
        path,
        epochs=epochs,
        batch_size=defaults["batch_size"],
        lr=defaults["lr"],
        seed=args.seed,
        root=args.data_root,
        progress=lambda line: print(f"[{dataset}] {line}", flush=True),
    )
    training["hardware"] = hardware(training["device"])
    print(f"[{dataset}] test accuracy {100 * training['test_accuracy']:.2f}%", flush=True)

    net = ClassifierFeatures(path)
    test, _ = labelled_images(dataset, train=False, root=args.data_root)
    train, _ = labelled_images(dataset, train=True, root=args.data_root)
    print(f"[{dataset}] reference values at sizes {defaults['sizes']}", flush=True)
    reference = reference_statistics(test, train, net, sizes=defaults["sizes"], seed=0)
    for row in reference:
        print(f"[{dataset}] {row}", flush=True)
    card_path = args.out_dir / f"{name}.md"
    card_path.write_text(card(name, path, net, training, reference))
    print(f"[{dataset}] wrote {card_path}", flush=True)
    return training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the offline feature classifiers of the image metrics "
        "(FD-FMNIST, FD-DIGITS, ...) and write their model cards.",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=tuple(CLASSIFIER_DATASETS),
        default=list(CLASSIFIER_DATASETS),
        help="data sets to train a classifier for (default: all)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("checkpoints/classifiers"),
        help="folder of the .safetensors files and .md cards (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs for every data set (default: 5 for fashion_mnist, 60 for digits)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--data-root", default=None, help="data folder (default: ECNF_DATA)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    start = time.perf_counter()
    for dataset in args.datasets:
        run(dataset, args)
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
