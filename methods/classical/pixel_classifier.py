"""A random forest on multiscale per-pixel features (scikit-image's trainable segmentation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage.color import rgb2lab
from skimage.feature import multiscale_basic_features
from sklearn.ensemble import RandomForestClassifier

from segbench.datasets.base import Sample
from segbench.methods.base import METHODS, Method

__all__ = ["PixelForest"]


@METHODS.register("pixel-rf")
class PixelForest(Method):
    """Per-pixel random forest on colour, edge and texture features at several scales.

    Features (``skimage.feature.multiscale_basic_features`` on the Lab image): Gaussian-smoothed
    intensity, gradient magnitude and Hessian eigenvalues at ``num_sigma`` scales between ``sigma_min`` and
    ``sigma_max``; optionally the pixel's normalised position. Training pixels are sampled per image and
    class (at most ``pixels_per_class``), so small classes are not drowned out.
    """

    description = "random forest on multiscale colour/texture features per pixel"
    default_work_size = 256
    quick_options = {"n_estimators": 30, "pixels_per_class": 500}

    @dataclass
    class Options:
        n_estimators: int = 60
        max_depth: int | None = 16
        min_samples_leaf: int = 5
        pixels_per_class: int = 1000
        sigma_min: float = 1.0
        sigma_max: float = 16.0
        num_sigma: int = 5
        use_position: bool = False
        #: Worker threads of the forest; None: the configured threads (``torch.get_num_threads()``, which
        #: ``--threads``, ``OMP_NUM_THREADS`` and the runner set), so the recorded thread count is what ran.
        n_jobs: int | None = None

    def _n_jobs(self) -> int:
        return self.opts.n_jobs if self.opts.n_jobs is not None else torch.get_num_threads()

    def _features(self, image: np.ndarray) -> np.ndarray:
        lab = rgb2lab(image).astype(np.float32)
        lab[..., 0] /= 100.0  # bring L (0..100) near the a/b range (-1..1 after /100) for comparable features
        lab[..., 1:] /= 100.0
        feats = multiscale_basic_features(
            lab,
            channel_axis=-1,
            sigma_min=self.opts.sigma_min,
            sigma_max=self.opts.sigma_max,
            num_sigma=self.opts.num_sigma,
            workers=self._n_jobs(),  # None would use every core
        )
        if self.opts.use_position:
            h, w = image.shape[:2]
            rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
            feats = np.concatenate([feats, (rows / h)[..., None], (cols / w)[..., None]], axis=-1)
        return feats.astype(np.float32, copy=False)

    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        rng = np.random.default_rng(self.seed)
        xs, ys = [], []
        for s in train:
            feats = self._features(s.image)
            valid = s.valid(self.ignore_index)
            for c in range(self.num_classes):
                idx = np.flatnonzero((s.mask == c) & valid)
                if idx.size:
                    pick = rng.choice(idx, size=min(idx.size, self.opts.pixels_per_class), replace=False)
                    xs.append(feats.reshape(-1, feats.shape[-1])[pick])
                    ys.append(np.full(pick.size, c))
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.forest_ = RandomForestClassifier(
            n_estimators=self.opts.n_estimators,
            max_depth=self.opts.max_depth,
            min_samples_leaf=self.opts.min_samples_leaf,
            n_jobs=self._n_jobs(),
            random_state=self.seed,
        ).fit(x, y)

    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        feats = self._features(image)
        h, w = image.shape[:2]
        self.forest_.n_jobs = self._n_jobs()  # the threads configured now, not when it was fitted
        known = self.forest_.predict_proba(feats.reshape(h * w, -1))
        proba = np.zeros((h * w, self.num_classes), dtype=np.float32)
        proba[:, self.forest_.classes_] = known  # classes absent from training keep probability 0
        return proba.T.reshape(self.num_classes, h, w)
