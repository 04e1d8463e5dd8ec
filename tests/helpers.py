"""Helpers shared by the tests: tiny datasets written in each supported layout, the real-data switch, and
the chance level an accuracy threshold must clear."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATA_DIR = os.environ.get("SEGBENCH_DATA_DIR")


def requires_data(*parts: str):
    """Skip unless ``$SEGBENCH_DATA_DIR/<parts>`` exists (the real datasets are never in the repository)."""
    path = Path(DATA_DIR, *parts) if DATA_DIR else None
    return pytest.mark.skipif(
        path is None or not path.exists(),
        reason=f"needs SEGBENCH_DATA_DIR with {'/'.join(parts)} (real data is not shipped; see README)",
    )


#: How far above the best constant prediction every accuracy threshold must sit.
CHANCE_MARGIN = 0.05


def best_constant_score(truth: np.ndarray, score: Callable[[np.ndarray, np.ndarray], float], labels: Iterable[int]) -> float:
    """The best ``score(truth, pred)`` of a prediction that is one class everywhere (tried for each label).

    An accuracy threshold at or below this is met by a predictor that looks at nothing.
    """
    truth = np.asarray(truth)
    return max(float(score(truth, np.full_like(truth, c))) for c in labels)


def assert_beats_chance(value: float, threshold: float, chance: float, what: str = "score") -> None:
    """``value > threshold``, where the threshold itself clears ``chance`` (a constant's score) by the margin."""
    assert threshold >= chance + CHANCE_MARGIN, (
        f"test bug: the {what} threshold {threshold} is within {CHANCE_MARGIN} of a constant prediction's "
        f"{chance:.3f}; raise it"
    )
    assert value > threshold, f"{what} {value:.3f} <= {threshold} (a constant prediction scores {chance:.3f})"


def blob_pair(rng: np.random.Generator, h: int = 40, w: int = 52) -> tuple[np.ndarray, np.ndarray]:
    """An RGB image with a dark disc on a bright noisy background, and its 0/1 mask."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx, r = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w, rng.uniform(0.2, 0.3) * min(h, w)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2).astype(np.uint8)
    base = np.where(mask[..., None] == 1, [90, 60, 40], [210, 170, 150]).astype(np.float64)
    image = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    return image, mask


def write_folder_dataset(root: Path, n: int = 6, *, seed: int = 0, mask_values: str = "0/255") -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = blob_pair(rng)
        Image.fromarray(image).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray((mask * 255 if mask_values == "0/255" else mask).astype(np.uint8)).save(root / "masks" / f"img{i:02d}.png")
    return root


def write_ph2_dataset(root: Path, n: int = 6, *, seed: int = 0, image_suffix: str = ".bmp") -> Path:
    """The PH2 download's layout, with 1-bit lesion masks, as the real files have."""
    rng = np.random.default_rng(seed)
    base = root / "PH2Dataset" / "PH2 Dataset images"
    for i in range(n):
        sid = f"IMD{i + 1:03d}"
        image, mask = blob_pair(rng)
        (base / sid / f"{sid}_Dermoscopic_Image").mkdir(parents=True)
        (base / sid / f"{sid}_lesion").mkdir()
        (base / sid / f"{sid}_roi").mkdir()
        Image.fromarray(image).save(base / sid / f"{sid}_Dermoscopic_Image" / f"{sid}{image_suffix}")
        Image.fromarray(mask.astype(bool)).convert("1").save(base / sid / f"{sid}_lesion" / f"{sid}_lesion.bmp")
    return root


#: Colours of the CamVid fixture's classes 0..10 (void, 11, is black), so that the image predicts the label.
_CAMVID_COLOURS = np.array(
    [[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128], [0, 0, 192], [128, 128, 0],
     [192, 128, 128], [64, 64, 128], [64, 0, 128], [64, 64, 0], [0, 128, 192], [0, 0, 0]],
    dtype=np.float64,
)


def camvid_labels(rng: np.random.Generator, h: int = 24, w: int = 32) -> np.ndarray:
    """A street-like label map: sky, building, road and pavement bands, one random object, a void column."""
    labels = np.zeros((h, w), np.uint8)
    labels[h // 4 : h // 2] = 1
    labels[h // 2 :] = 3
    labels[3 * h // 4 :, : w // 3] = 4
    y, x = int(rng.integers(h // 4, h - 6)), int(rng.integers(0, w - 6))
    labels[y : y + 5, x : x + 5] = rng.choice([2, 5, 6, 7, 8, 9, 10])
    labels[:, -1] = 11  # void, as SegNet's annotations mark unlabelled pixels
    return labels


def write_camvid_dataset(
    root: Path, *, splits: dict[str, int] | None = None, lists: bool = True, seed: int = 0, h: int = 24, w: int = 32
) -> Path:
    """SegNet's CamVid layout under ``root/CamVid``: ``<split>/``, ``<split>annot/`` and ``<split>.txt`` lists
    holding absolute paths of another machine, as the real lists do. Returns ``root``."""
    rng = np.random.default_rng(seed)
    base = root / "CamVid"
    for split, n in (splits or {"train": 4, "val": 2}).items():
        (base / split).mkdir(parents=True)
        (base / f"{split}annot").mkdir()
        lines = []
        for i in range(n):
            name = f"{split[:2]}{i:03d}_{seed:02d}.png"
            labels = camvid_labels(rng, h, w)
            image = np.clip(_CAMVID_COLOURS[labels] + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(base / split / name)
            Image.fromarray(labels).save(base / f"{split}annot" / name)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        if lists:
            (base / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def isbi_pair(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A greyscale EM-like slice (bright cells, dark membranes) and its 0/255 label (255 = cell)."""
    label = np.full((size, size), 255, np.uint8)
    for _ in range(3):
        label[int(rng.integers(2, size - 2)), :] = 0
        label[:, int(rng.integers(2, size - 2))] = 0
    image = np.clip(np.where(label == 255, 190.0, 60.0) + rng.normal(0, 15, label.shape), 0, 255).astype(np.uint8)
    return image, label


def write_isbi_dataset(root: Path, n: int = 6, *, layout: str = "png", seed: int = 0, size: int = 32) -> Path:
    """ISBI 2012 as ``isbi2012-em/train/{image,label}/N.png`` (``layout="png"``) or as the challenge's
    ``train-volume.tif`` + ``train-labels.tif`` stacks (``layout="volume"``). Returns ``root``."""
    rng = np.random.default_rng(seed)
    pairs = [isbi_pair(rng, size) for _ in range(n)]
    if layout == "volume":
        root.mkdir(parents=True, exist_ok=True)
        for name, index in (("train-volume.tif", 0), ("train-labels.tif", 1)):
            pages = [Image.fromarray(p[index]) for p in pairs]
            pages[0].save(root / name, save_all=True, append_images=pages[1:])
        return root
    base = root / "isbi2012-em" / "train"
    (base / "image").mkdir(parents=True)
    (base / "label").mkdir()
    for i, (image, label) in enumerate(pairs):
        Image.fromarray(image).save(base / "image" / f"{i}.png")
        Image.fromarray(label).save(base / "label" / f"{i}.png")
    return root


def write_mads_dataset(root: Path, n: int = 5, *, seed: int = 0, mask_style: str = "rgb") -> Path:
    """The Kaggle MADS layout: ``segmentation_full_body_mads_dataset_1192_img/{images,masks}/<name>.png`` with
    the same names; masks RGB white-on-black with a soft (resampled) edge, or ``"grey"`` 0/255. Returns ``root``."""
    rng = np.random.default_rng(seed)
    base = root / "segmentation_full_body_mads_dataset_1192_img"
    (base / "images").mkdir(parents=True)
    (base / "masks").mkdir()
    h, w = 40, 30
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cy, cx = rng.uniform(15, 25), rng.uniform(10, 20)
        inside = ((yy - cy) / 14) ** 2 + ((xx - cx) / 6) ** 2  # an upright person-like ellipse
        person = inside < 1
        image = np.where(person[..., None], [200, 80, 60], [40, 90, 160]) + rng.normal(0, 10, (h, w, 3))
        name = f"Taichi_S{i}_C0_{i * 7:05d}.png"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(base / "images" / name)
        if mask_style == "rgb":
            soft = np.clip((1.15 - inside) / 0.3, 0, 1) * 255  # edge values between 0 and 255, as after resizing
            Image.fromarray(np.repeat(np.rint(soft).astype(np.uint8)[..., None], 3, axis=2)).save(base / "masks" / name)
        else:
            Image.fromarray(person.astype(np.uint8) * 255).save(base / "masks" / name)
    return root
