"""The road from a patch classifier to FCN-8s on one PH2 test image, as one figure (docs/fcn.md).

Panels: the image with the true lesion outline; the sliding-window loop's lesion heatmap; the converted
network's heatmap (with the largest difference from the loop); FCN-32s, FCN-16s and FCN-8s predictions.

Weights come from a run folder (``segbench run --datasets ph2 --methods sliding-window,fcn32s,fcn16s,fcn8s
--out RUN``): each method's ``artifacts/ph2__<method>__seed0-*/best.pt``. A method without one there is
trained with its quick options on the run's training split (or a fresh split without a run folder).

    SEGBENCH_DATA_DIR=../shared/data python scripts/road_to_fcn.py --run /work/runs/ph2-fcn \
        --out results/reference/earlier/ph2-fcn/road_to_fcn.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from skimage.segmentation import find_boundaries  # noqa: E402

from segbench.datasets import build_dataset  # noqa: E402
from segbench.datasets.splits import dataset_split, read_split_file  # noqa: E402
from segbench.methods import build_method  # noqa: E402
from segbench.methods.deep import CHECKPOINT_NAME, DeepMethod  # noqa: E402

FCNS = ("fcn32s", "fcn16s", "fcn8s")


def _load(name: str, run: Path | None, train, val) -> DeepMethod:
    found = sorted(run.glob(f"artifacts/ph2__{name}__seed0-*/{CHECKPOINT_NAME}")) if run else []
    if found:
        return build_method(name, 2, options={name: {"checkpoint": str(found[-1]), "device": "cpu"}}).fit([])
    print(f"{name}: no checkpoint in {run}; training with quick options")
    return build_method(name, 2, quick=True, options={name: {"device": "cpu"}}).fit(train, val)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * float((pred & truth).sum()) / max(1, int(pred.sum() + truth.sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="run folder with the trained methods' artifacts")
    parser.add_argument("--image", default=None, help="PH2 image id (default: the test image of median FCN-8s Dice)")
    parser.add_argument("--out", type=Path, default=Path("results/reference/earlier/ph2-fcn/road_to_fcn.png"))
    args = parser.parse_args()

    ds = build_dataset("ph2")
    split_file = args.run / "splits" / "ph2.csv" if args.run else None
    split = read_split_file(split_file, ds.ids()) if split_file and split_file.is_file() else dataset_split(ds)
    train, val = ds.subset(split["train"]), ds.subset(split["val"])
    image_id = args.image
    if image_id is None:
        table = pd.read_csv(args.run / "per_image.csv") if args.run and (args.run / "per_image.csv").is_file() else None
        if table is not None and (table["method"] == "fcn8s").any():
            scores = table[table["method"] == "fcn8s"].sort_values("dice_lesion")
            image_id = str(scores["image_id"].iloc[len(scores) // 2])
        else:
            image_id = split["test"][0]
    sample = ds[image_id]
    truth = sample.mask == 1

    sliding = _load("sliding-window", args.run, train, val)
    loop = sliding.heatmap(sample.image, one_pass=False)
    conv = sliding.heatmap(sample.image, one_pass=True)
    diff = float(np.abs(loop - conv).max())
    masks = {name: _load(name, args.run, train, val).predict(sample.image) == 1 for name in FCNS}

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.6))
    outline = find_boundaries(truth, mode="thick")

    def show(ax, title: str, pred: np.ndarray | None = None) -> None:
        shown = sample.image.copy()
        if pred is not None:  # green: correct lesion, red: false positive, blue: missed
            shown[pred & truth] = (0.5 * shown[pred & truth] + [0, 127, 0]).astype(np.uint8)
            shown[pred & ~truth] = (0.5 * shown[pred & ~truth] + [127, 0, 0]).astype(np.uint8)
            shown[~pred & truth] = (0.5 * shown[~pred & truth] + [0, 0, 127]).astype(np.uint8)
        shown[outline] = (255, 255, 0)
        ax.imshow(shown)
        ax.set_title(title, fontsize=10)

    show(axes[0, 0], f"PH2 {image_id}\nimage and true lesion (yellow)")
    sw_dice = _dice(sliding.predict(sample.image) == 1, truth)
    for ax, heat, title in ((axes[0, 1], loop, "sliding window, loop"), (axes[0, 2], conv, "converted net, one pass")):
        p = np.exp(heat[1]) / np.exp(heat).sum(0)  # softmax lesion probability per window
        im = ax.imshow(p, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{title}\nP(lesion), {p.shape[0]}x{p.shape[1]} windows; mask Dice {sw_dice:.3f}", fontsize=10)
    axes[0, 2].set_xlabel(f"max |loop - converted| = {diff:.1e}", fontsize=9)
    fig.colorbar(im, ax=axes[0, 2], fraction=0.035, pad=0.03)
    for ax, name in zip(axes[1], FCNS):
        show(ax, f"{name.upper().replace('S', 's')}\nDice {_dice(masks[name], truth):.3f}", masks[name])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("From a sliding-window classifier to FCN-8s (green: correct, red: false positive, blue: missed)", fontsize=11)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, bbox_inches="tight")
    print(f"{image_id}: max |loop - converted| = {diff:.2e}; written {args.out} ({args.out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
