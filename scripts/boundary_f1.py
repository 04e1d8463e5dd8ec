"""Boundary F1 of saved predictions (``segbench run --save-predictions``): how well each method outlines the lesion.

Per test image, the predicted and true lesion boundaries (one-pixel contours at the mask's resolution) are matched
within a tolerance of ``--tolerance`` times the image diagonal (0.75% by default, as in Csurka et al., BMVC 2013): precision = predicted boundary pixels near a true one,
recall = true boundary pixels near a predicted one, F1 their harmonic mean; the table gives the mean over images.

    SEGBENCH_DATA_DIR=../shared/data python scripts/boundary_f1.py /work/runs/ph2-fcn
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import distance_transform_edt
from skimage.segmentation import find_boundaries

from segbench.datasets import build_dataset
from segbench.run.records import image_id_from_stem


def boundary_f1(pred: np.ndarray, truth: np.ndarray, tolerance: float) -> float:
    """F1 of the boundaries of two boolean masks, matched within ``tolerance`` pixels (1.0 when both are empty)."""
    bp, bt = find_boundaries(pred, mode="inner"), find_boundaries(truth, mode="inner")
    if not bp.any() and not bt.any():
        return 1.0
    if not bp.any() or not bt.any():
        return 0.0
    precision = (distance_transform_edt(~bt)[bp] <= tolerance).mean()
    recall = (distance_transform_edt(~bp)[bt] <= tolerance).mean()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder with predictions/<dataset>/<method>/<seed>/<image>.png")
    parser.add_argument("--dataset", default="ph2")
    parser.add_argument("--tolerance", type=float, default=0.0075, help="fraction of the image diagonal (default: 0.0075)")
    args = parser.parse_args()
    ds = build_dataset(args.dataset)
    print(f"| method | boundary F1 (tolerance {100 * args.tolerance:g}% of the diagonal), per-image mean | images |")
    print("| --- | --- | --- |")
    for folder in sorted((args.run / "predictions" / args.dataset).iterdir()):
        scores = []
        for png in sorted(folder.glob("*/*.png")):  # every seed
            truth = ds[image_id_from_stem(png.stem)].mask == 1
            tolerance = args.tolerance * float(np.hypot(*truth.shape))
            scores.append(boundary_f1(np.asarray(Image.open(png)) == 1, truth, tolerance))
        print(f"| {folder.name} | {np.mean(scores):.3f} | {len(scores)} |")


if __name__ == "__main__":
    main()
