"""The ``crf`` stage: a fully connected CRF (Krähenbühl & Koltun, NIPS 2011) over any method's probabilities.

``pydensecrf2`` runs mean-field inference with a Gaussian smoothness kernel (nearby pixels agree) and a
bilateral appearance kernel (nearby pixels of similar colour agree). The method's probabilities are the
unary term. The CRF runs at the pipeline's working size by default, or at most at ``max_side`` pixels on the
longer side (a 768x576 PH2 image costs
~0.37 s at full size, ~0.16 s at 512); its correction ``log Q - log P`` is upsampled and added to the
full-resolution log-probabilities, so thin detail the method found survives the round trip and a CRF
without pairwise terms returns its input.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pydensecrf.densecrf as dcrf

from segbench.datasets.base import Sample
from segbench.datasets.transforms import resize_image, resize_proba, work_shape
from segbench.methods.base import STAGES, Method, Stage
from segbench.methods.tuning import best_index, selection_score

__all__ = ["DenseCRF", "dense_crf"]

_EPS = 1e-6


def dense_crf(
    image: np.ndarray,
    proba: np.ndarray,
    *,
    iterations: int = 5,
    gaussian_sxy: float = 3.0,
    gaussian_weight: float = 3.0,
    bilateral_sxy: float = 40.0,
    bilateral_srgb: float = 13.0,
    bilateral_weight: float = 5.0,
) -> np.ndarray:
    """Mean-field inference of a dense CRF.

    Args:
        image: ``(H, W, 3) uint8`` RGB image.
        proba: ``(C, H, W)`` probabilities (the unary term is their negative log).
        iterations: Mean-field iterations.
        gaussian_sxy, gaussian_weight: Width (pixels) and Potts weight of the smoothness kernel.
        bilateral_sxy, bilateral_srgb, bilateral_weight: Spatial width (pixels), colour width (0..255 units)
            and Potts weight of the appearance kernel.

    Returns:
        ``(C, H, W) float32`` marginals.
    """
    c, h, w = proba.shape
    crf = dcrf.DenseCRF2D(w, h, c)
    unary = -np.log(np.clip(proba, _EPS, 1.0)).reshape(c, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    if gaussian_weight > 0:
        crf.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_weight)
    if bilateral_weight > 0:
        rgb = np.array(image, dtype=np.uint8, order="C")  # pydensecrf needs a writable C-contiguous buffer
        crf.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=rgb, compat=bilateral_weight)
    return np.asarray(crf.inference(iterations), dtype=np.float32).reshape(c, h, w)


@STAGES.register("crf")
class DenseCRF(Stage):
    """Dense CRF refinement of the probabilities before it (``slic+crf``, ``graphcut+crf``, ``deeplab+crf``).

    Options:
        iterations: Mean-field iterations.
        gaussian_sxy, gaussian_weight: Smoothness kernel (pixels at the CRF's resolution, Potts weight).
        bilateral_sxy, bilateral_srgb, bilateral_weight: Appearance kernel.
        max_side: The CRF runs at this longer side at most (kernel widths are pixels at that size);
            ``"pipeline"`` (default): at the pipeline's working size, as every other part of it; None: at
            the image's own size.
        tune: In ``fit``, choose ``bilateral_weight``, ``bilateral_srgb`` and ``bilateral_sxy`` from a small
            grid by the selection score (``segbench.methods.tuning``) on held-out images: the validation split when there is one, else the training
            split (never the test split). Validation first because a method's predictions on its own
            training images are over-confident, and a CRF tuned there under-smooths.
        tune_images: At most this many images are used for tuning.
    """

    description = "fully connected CRF (Gaussian + bilateral kernels, mean field), tuned on train/val"

    @dataclass(kw_only=True)
    class Options:
        iterations: int = 5
        gaussian_sxy: float = 3.0
        gaussian_weight: float = 3.0
        bilateral_sxy: float = 40.0
        bilateral_srgb: float = 13.0
        bilateral_weight: float = 5.0
        max_side: int | str | None = "pipeline"
        tune: bool = True
        tune_images: int = 12

    #: The tuning grid (weight 0 = no appearance kernel, i.e. the method alone plus light smoothing).
    GRID = {"bilateral_weight": (0.0, 5.0, 10.0, 20.0), "bilateral_srgb": (13.0, 25.0, 40.0), "bilateral_sxy": (30.0, 60.0)}

    def __init__(self, num_classes: int, *, seed: int = 0, **options: object) -> None:
        super().__init__(num_classes, seed=seed, **options)
        if self.opts.iterations < 0:
            raise ValueError(f"crf: iterations must be >= 0, got {self.opts.iterations}")
        if isinstance(self.opts.max_side, str) and self.opts.max_side != "pipeline":
            raise ValueError(f"crf: max_side={self.opts.max_side!r}; give a number of pixels, None or 'pipeline'")
        self.params_ = self._params(self.opts)
        self.tuning_: list[dict[str, float]] = []

    @staticmethod
    def _params(opts: object) -> dict[str, float]:
        keys = ("iterations", "gaussian_sxy", "gaussian_weight", "bilateral_sxy", "bilateral_srgb", "bilateral_weight")
        return {k: getattr(opts, k) for k in keys}

    def _refine(self, image: np.ndarray, proba: np.ndarray, params: dict[str, float]) -> np.ndarray:
        h, w = proba.shape[1:]
        shape = work_shape(h, w, self.work_size if self.opts.max_side == "pipeline" else self.opts.max_side)
        if shape == (h, w):
            return dense_crf(image, proba, **params)
        small_p = resize_proba(proba, shape)
        small_q = dense_crf(resize_image(image, shape), small_p, **params)
        # Upsample the CRF's correction, not its output: where it changes nothing, the input stays exact.
        delta = np.log(np.clip(small_q, _EPS, 1.0)) - np.log(np.clip(small_p, _EPS, 1.0))
        logits = np.log(np.clip(proba, _EPS, 1.0)) + resize_proba(delta, (h, w))
        logits -= logits.max(axis=0, keepdims=True)
        out = np.exp(logits)
        return (out / out.sum(axis=0, keepdims=True)).astype(np.float32)

    def fit(self, before: Method, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        if not self.opts.tune:
            return
        samples = list(val) if val else list(train)
        samples = samples[: self.opts.tune_images]
        if not samples:
            return
        probas = [before.predict_proba(s.image) for s in samples]
        candidates = []
        for weight, srgb, sxy in itertools.product(*self.GRID.values()):
            if weight == 0 and (srgb, sxy) != (self.GRID["bilateral_srgb"][0], self.GRID["bilateral_sxy"][0]):
                continue  # without the appearance kernel its widths do not matter: try it once
            params = {**self._params(self.opts), "bilateral_weight": weight, "bilateral_srgb": srgb, "bilateral_sxy": sxy}
            preds = [self._refine(s.image, p, params).argmax(axis=0) for s, p in zip(samples, probas)]
            score = selection_score(preds, samples, self.num_classes, getattr(before, "ignore_index", 255))
            self.tuning_.append({**params, "score": score})
            candidates.append(params)
        # Ties (within float noise) keep the earlier, weaker setting; with nothing scored, the first one.
        self.params_ = candidates[best_index([t["score"] for t in self.tuning_], tol=1e-9)]

    def apply(self, image: np.ndarray, proba: np.ndarray) -> np.ndarray:
        return self._refine(image, proba, self.params_)

    def config(self) -> dict[str, object]:
        return {**super().config(), "tuned": {k: v for k, v in self.params_.items()}}
