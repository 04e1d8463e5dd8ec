"""SLIC superpixels classified one by one from colour, texture and position features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2lab
from skimage.feature import local_binary_pattern
from skimage.segmentation import slic
from sklearn.ensemble import HistGradientBoostingClassifier

from segbench.datasets.base import Sample
from segbench.methods.base import METHODS, Method

__all__ = ["SlicClassifier", "superpixel_features"]

_LBP_P, _LBP_R = 8, 1.0
_LBP_BINS = _LBP_P + 2  # "uniform" LBP codes 0..P+1
#: Fixed histogram ranges per Lab channel, so a bin means the same colour in every image.
_LAB_RANGES = ((0.0, 100.0), (-60.0, 80.0), (-60.0, 80.0))


def _segment_stats(values: np.ndarray, segments: np.ndarray, n: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment mean and standard deviation of ``values (H, W, K)`` -> two ``(n, K)`` arrays."""
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    seg = segments.ravel()
    sums = np.stack([np.bincount(seg, flat[:, k], n) for k in range(flat.shape[1])], axis=1)
    sq = np.stack([np.bincount(seg, flat[:, k] ** 2, n) for k in range(flat.shape[1])], axis=1)
    mean = sums / counts[:, None]
    return mean, np.sqrt(np.maximum(sq / counts[:, None] - mean**2, 0.0))


def _segment_hist(codes: np.ndarray, segments: np.ndarray, n: int, bins: int, counts: np.ndarray) -> np.ndarray:
    """Per-segment normalised histogram of integer ``codes`` in ``[0, bins)`` -> ``(n, bins)``."""
    joint = np.bincount(segments.ravel() * bins + codes.ravel(), minlength=n * bins).reshape(n, bins)
    return joint / counts[:, None]


def superpixel_features(image: np.ndarray, segments: np.ndarray, *, hist_bins: int = 8) -> np.ndarray:
    """Features of each superpixel of ``segments (H, W)`` (labels ``0..n-1``) of ``image (H, W, 3) uint8``.

    Per superpixel: mean and standard deviation of Lab and RGB; the mean Lab minus the image's border
    mean (skin or background colour varies between images more than the lesion's contrast to it);
    ``hist_bins``-bin histograms of L, a and b; a uniform LBP texture histogram; the centroid relative to
    the image centre; its distance to the centre; its size as a fraction of the image.

    Returns:
        ``(n, F) float32``.
    """
    h, w = segments.shape
    n = int(segments.max()) + 1
    counts = np.maximum(np.bincount(segments.ravel(), minlength=n), 1).astype(np.float64)
    lab = rgb2lab(image)
    lab_mean, lab_std = _segment_stats(lab, segments, n, counts)
    rgb_mean, rgb_std = _segment_stats(image / 255.0, segments, n, counts)
    border = np.ones((h, w), bool)
    m = max(1, min(h, w) // 20)
    border[m:-m, m:-m] = False
    lab_rel = lab_mean - lab[border].mean(axis=0)
    hists = []
    for k, (lo, hi) in enumerate(_LAB_RANGES):
        codes = np.clip(((lab[..., k] - lo) / (hi - lo) * hist_bins).astype(np.int64), 0, hist_bins - 1)
        hists.append(_segment_hist(codes, segments, n, hist_bins, counts))
    # LBP on a reflect-padded grey image, so border pixels have full neighbourhoods.
    pad = int(np.ceil(_LBP_R))
    grey = np.pad(np.round(lab[..., 0] * 2.55).astype(np.uint8), pad, mode="reflect")  # integer grey: stable codes
    lbp = local_binary_pattern(grey, _LBP_P, _LBP_R, method="uniform")[pad:-pad, pad:-pad].astype(np.int64)
    hists.append(_segment_hist(lbp, segments, n, _LBP_BINS, counts))
    rows, cols = np.mgrid[0:h, 0:w]
    pos = np.stack([(rows + 0.5) / h - 0.5, (cols + 0.5) / w - 0.5], axis=-1)
    centroid, _ = _segment_stats(pos, segments, n, counts)
    dist = np.hypot(centroid[:, 0], centroid[:, 1])[:, None]
    size = (counts / (h * w))[:, None]
    feats = [lab_mean, lab_std, lab_rel, rgb_mean, rgb_std, *hists, centroid, dist, size]
    return np.concatenate(feats, axis=1).astype(np.float32)


@METHODS.register("slic")
class SlicClassifier(Method):
    """SLIC superpixels, each classified by gradient-boosted trees on its colour, texture and position.

    ``fit`` labels every training superpixel with the majority class of its valid pixels (superpixels that
    are mostly ignored are skipped) and trains a ``HistGradientBoostingClassifier`` on their features
    (``superpixel_features``). ``predict_proba`` gives each pixel its superpixel's class probabilities.
    Defaults were chosen on PH2's training split at the 256-pixel working size: ~400 superpixels follow
    lesion borders closely while staying large enough for stable colour statistics.

    Options:
        n_segments: Approximate number of superpixels per image (SLIC's ``n_segments``).
        compactness: SLIC's colour/space trade-off (higher: more regular, less boundary-adherent).
        sigma: Gaussian smoothing before SLIC, in pixels.
        hist_bins: Bins of each Lab channel's histogram feature.
        max_iter, learning_rate, max_leaf_nodes, l2_regularization: the classifier's settings.
    """

    description = "SLIC superpixels + gradient-boosted trees on colour/texture/position features"
    default_work_size = 256
    quick_options = {"max_iter": 40}

    @dataclass
    class Options:
        n_segments: int = 400
        compactness: float = 10.0
        sigma: float = 1.0
        hist_bins: int = 8
        max_iter: int = 200
        learning_rate: float = 0.1
        max_leaf_nodes: int = 31
        l2_regularization: float = 1.0

    def __init__(self, num_classes: int, **kwargs: object) -> None:
        super().__init__(num_classes, **kwargs)
        if self.opts.n_segments < 1 or self.opts.compactness <= 0:
            raise ValueError(
                f"slic: n_segments must be >= 1 and compactness > 0, got {self.opts.n_segments} and {self.opts.compactness}"
            )

    def _segments(self, image: np.ndarray) -> np.ndarray:
        # start_label=0 and enforce_connectivity give dense labels 0..n-1; SLIC needs no border padding
        # (its clusters are local k-means, with nothing convolved across the border).
        return slic(image, n_segments=self.opts.n_segments, compactness=self.opts.compactness,
                    sigma=self.opts.sigma, start_label=0, channel_axis=-1)

    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        xs, ys = [], []
        for s in train:
            seg = self._segments(s.image)
            n = int(seg.max()) + 1
            valid = s.valid(self.ignore_index)
            classes = np.where(valid, s.mask, 0).astype(np.int64)
            votes = np.bincount(seg[valid] * self.num_classes + classes[valid], minlength=n * self.num_classes)
            votes = votes.reshape(n, self.num_classes)
            sizes = np.bincount(seg.ravel(), minlength=n)
            keep = votes.sum(axis=1) * 2 >= sizes  # at least half the superpixel is labelled
            xs.append(superpixel_features(s.image, seg, hist_bins=self.opts.hist_bins)[keep])
            ys.append(votes.argmax(axis=1)[keep])
        x, y = np.concatenate(xs), np.concatenate(ys)
        self.classes_ = np.unique(y)
        if self.classes_.size == 1:  # one class in training: nothing to learn, predict it everywhere
            self.model_ = None
            return
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.opts.max_iter,
            learning_rate=self.opts.learning_rate,
            max_leaf_nodes=self.opts.max_leaf_nodes,
            l2_regularization=self.opts.l2_regularization,
            early_stopping=False,
            random_state=self.seed,
        ).fit(x, y)

    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        seg = self._segments(image)
        n = int(seg.max()) + 1
        sp = np.zeros((n, self.num_classes), dtype=np.float32)
        if self.model_ is None:
            sp[:, self.classes_[0]] = 1.0
        else:
            sp[:, self.model_.classes_] = self.model_.predict_proba(superpixel_features(image, seg, hist_bins=self.opts.hist_bins))
        return np.ascontiguousarray(sp[seg].transpose(2, 0, 1))
