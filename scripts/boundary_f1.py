"""Boundary F1 of saved predictions (``segbench run --save-predictions``): how well each method outlines the lesion.

A thin wrapper of ``segbench.measure.boundary`` (definitions and the empty rule in docs/metrics.md) for run
folders written before the runner recorded ``bf1_<class>`` itself; newer runs have it in per_image.csv and
summary.csv (``per_image_bf1_<class>``). Per test image, predicted and true lesion boundaries are matched within
``--tolerance`` times the image diagonal (0.75% by default, Csurka et al., BMVC 2013); the table gives the mean
over images (an image with the lesion in neither mask is undefined and left out; one missing from exactly one
mask scores 0).

    SEGBENCH_DATA_DIR=../shared/data python scripts/boundary_f1.py /work/runs/ph2-fcn
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from segbench.datasets import build_dataset
from segbench.measure.boundary import boundary_scores
from segbench.run.records import image_id_from_stem


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
            sample = ds[image_id_from_stem(png.stem)]
            pred = np.asarray(Image.open(png))
            bf1 = boundary_scores(sample.mask, pred, ds.num_classes, tolerance=f"{100 * args.tolerance}%",
                                  ignore_index=ds.ignore_index, ignore_mask=sample.ignore)["bf1"][1]
            scores.append(bf1)
        print(f"| {folder.name} | {np.nanmean(scores):.3f} | {np.count_nonzero(~np.isnan(scores))} |")


if __name__ == "__main__":
    main()
