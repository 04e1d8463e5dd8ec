"""Helpers shared by the tests: tiny datasets written in each supported layout, and the real-data switch."""

from __future__ import annotations

import os
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
