"""Graph cuts: a learned per-pixel class model (random forest or colour GMMs) as unary with a
contrast-sensitive Potts prior, solved by max-flow (``graphcut``), and GrabCut's iterated colour models from
a box (``grabcut``).

Energy (Boykov & Jolly 2001; Rother et al. 2004): ``E(L) = sum_p D_p(L_p) + sum_{p~q} w_pq [L_p != L_q]`` on
the 8-connected grid, with ``w_pq = pairwise * exp(-beta |I_p - I_q|^2) / dist(p, q)`` and ``beta`` the
inverse of twice the image's mean squared colour difference between neighbours. Two classes are solved
exactly by one s-t min cut (PyMaxflow, Boykov-Kolmogorov); more classes by alpha-expansion (Boykov, Veksler
& Zabih 2001), one min cut per expansion move, which stays within a factor 2 of the optimum for Potts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import maxflow
import numpy as np
from scipy.special import logsumexp
from skimage.color import rgb2lab
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from segbench.datasets.base import Sample
from segbench.methods.base import METHODS, Method
from segbench.methods.classical.pixel_classifier import PixelForest
from segbench.methods.tuning import best_index, selection_score

__all__ = ["GraphCut", "GrabCut", "alpha_expansion", "contrast_weights"]

#: (row, column) offsets of the 8-connected grid, each pair counted once.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Share of the one-hot cut in the probabilities returned: the argmax is the cut (0.6 > 0.4), the rest is
#: the colour model's posterior, so a CRF after the cut still has soft evidence to weigh.
_CUT_SHARE = 0.6


def _pairs(h: int, w: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Flat indices ``(p, q)`` of every neighbour pair of an ``h x w`` grid, per offset, with its length."""
    idx = np.arange(h * w).reshape(h, w)
    out = []
    for dr, dc in _OFFSETS:
        if dc >= 0:
            p, q = idx[: h - dr, : w - dc], idx[dr:, dc:]
        else:
            p, q = idx[: h - dr, -dc:], idx[dr:, : w + dc]
        out.append((p.ravel(), q.ravel(), float(np.hypot(dr, dc))))
    return out


def contrast_weights(image: np.ndarray, pairwise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contrast-sensitive Potts weights of ``image (H, W, 3)`` on the 8-connected grid.

    Returns:
        ``(p, q, w)``: flat pixel indices of each neighbour pair and its weight.
    """
    h, w = image.shape[:2]
    flat = image.reshape(h * w, -1).astype(np.float64)
    pairs = _pairs(h, w)
    sq = [((flat[p] - flat[q]) ** 2).sum(axis=1) for p, q, _ in pairs]
    mean_sq = np.mean(np.concatenate(sq)) if h * w > 1 else 0.0
    beta = 0.0 if mean_sq == 0 else 1.0 / (2.0 * mean_sq)
    ps = np.concatenate([p for p, _, _ in pairs])
    qs = np.concatenate([q for _, q, _ in pairs])
    ws = np.concatenate([pairwise * np.exp(-beta * d) / dist for d, (_, _, dist) in zip(sq, pairs)])
    return ps, qs, ws


def _expand(unary: np.ndarray, labels: np.ndarray, alpha: int, p: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One expansion move: every pixel keeps its label or takes ``alpha``; returns the optimal new labels.

    The pairwise table of a pair is ``A = E(keep, keep)``, ``B = E(keep, alpha)``, ``C = E(alpha, keep)``,
    ``D = E(alpha, alpha) = 0``; it is written as ``A + (C-A) x_p + (D-C) x_q + (B+C-A-D)(1-x_p) x_q``
    (Kolmogorov & Zabih 2004), and ``B+C-A-D >= 0`` holds for Potts, so the cut is exact.
    """
    n = labels.size
    cost0 = unary[labels, np.arange(n)].astype(np.float64)  # keep
    cost1 = unary[alpha].astype(np.float64).copy()  # switch to alpha
    a = w * (labels[p] != labels[q])
    b = w * (labels[p] != alpha)
    c = w * (labels[q] != alpha)
    cost1 += np.bincount(p, c - a, minlength=n) - np.bincount(q, c, minlength=n)  # (C - A) on p, (D - C) on q
    base = np.minimum(cost0, cost1)
    g = maxflow.Graph[float](n, p.size)
    nodes = g.add_nodes(n)
    g.add_edges(nodes[p], nodes[q], np.maximum(b + c - a, 0.0), np.zeros(p.size))
    # A node on the sink side (x = 1, switch) pays its source capacity, on the source side its sink capacity.
    g.add_grid_tedges(nodes, cost1 - base, cost0 - base)
    g.maxflow()
    switch = g.get_grid_segments(nodes)
    return np.where(switch, alpha, labels)


def _binary_cut(unary: np.ndarray, p: np.ndarray, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The exact two-label minimum: symmetric Potts edges, terminal edges from the unaries (label 1 = sink)."""
    n = unary.shape[1]
    g = maxflow.Graph[float](n, p.size)
    nodes = g.add_nodes(n)
    g.add_edges(nodes[p], nodes[q], w, w)
    base = unary.min(axis=0)
    g.add_grid_tedges(nodes, unary[1] - base, unary[0] - base)
    g.maxflow()
    return g.get_grid_segments(nodes).astype(np.int64)


def alpha_expansion(
    unary: np.ndarray, edges: tuple[np.ndarray, np.ndarray, np.ndarray], *, max_cycles: int = 5
) -> np.ndarray:
    """Minimise ``sum_p unary[L_p, p] + sum_{p~q} w_pq [L_p != L_q]``.

    Args:
        unary: ``(C, H, W)`` costs.
        edges: ``(p, q, w)`` neighbour pairs (flat indices) and Potts weights, from ``contrast_weights``.
        max_cycles: Cycles over all labels at most (more than two classes); it stops when none changes.

    Two classes: one exact min cut. More: alpha-expansion cycles until no move lowers the energy.

    Returns:
        ``(H, W) int64`` labels.
    """
    c, h, wd = unary.shape
    flat = unary.reshape(c, -1)
    p, q, w = edges
    if not (w > 0).any():
        return flat.argmin(axis=0).reshape(h, wd)
    if c == 2:
        return _binary_cut(flat, p, q, w).reshape(h, wd)
    labels = flat.argmin(axis=0)
    for _ in range(max_cycles):
        changed = False
        for alpha in range(c):
            new = _expand(flat, labels, alpha, p, q, w)
            changed |= bool((new != labels).any())
            labels = new
        if not changed:
            break
    return labels.reshape(h, wd)


def _cut_proba(labels: np.ndarray, log_post: np.ndarray) -> np.ndarray:
    """Probabilities whose argmax is the cut: a mix of its one-hot map and the colour posterior."""
    onehot = (np.arange(log_post.shape[0])[:, None, None] == labels[None]).astype(np.float32)
    post = np.exp(log_post - logsumexp(log_post, axis=0, keepdims=True)).astype(np.float32)
    return _CUT_SHARE * onehot + (1.0 - _CUT_SHARE) * post


def _features(image: np.ndarray, relative: bool = False) -> np.ndarray:
    """``(H*W, 3)`` Lab colours (a perceptually even space), optionally minus the mean of the image's border.

    Relative colour normalises lighting and skin tone between images: a class model learned on other images
    transfers when the object's contrast to its surround is stabler than its absolute colour (PH2 lesions).
    """
    lab = rgb2lab(image)
    if relative:
        h, w = lab.shape[:2]
        m = max(1, min(h, w) // 20)
        border = np.ones((h, w), bool)
        border[m:-m, m:-m] = False
        lab = lab - lab[border].mean(axis=0)
    return lab.reshape(-1, 3)


@METHODS.register("graphcut")
class GraphCut(Method):
    """Graph cut whose unary is a per-pixel class model learned on the training split.

    ``unary="forest"`` (default): the negative log probabilities of the ``pixel-rf`` random forest on
    multiscale colour/texture features. ``unary="gmm"``: one ``GaussianMixture`` per class on Lab colours
    (relative to the image's border mean with ``relative``) of at most ``pixels_per_image`` sampled
    training pixels, with class priors from the pixel counts; the unary is the negative log posterior.
    Colour alone separates PH2 lesions poorly (dataset Dice ~0.74 on a training hold-out, against ~0.85 with
    the forest), which is why the forest is the default. The pairwise weight is chosen from ``PAIRWISE_GRID`` by mean IoU on the validation split
    (the training split when there is none) unless ``tune`` is off.

    Options:
        unary: ``"forest"`` or ``"gmm"`` (see above).
        forest_trees: Trees of the forest.
        components: Gaussians per class.
        pairwise: Weight of the contrast-sensitive Potts term (used as is when ``tune`` is off).
        pixels_per_image: Training pixels sampled per image and class.
        tune: Choose ``pairwise`` on held-out training data.
        tune_images: At most this many images are used for tuning.
    """

    description = "pixel-forest (or GMM colour) unaries + contrast-sensitive Potts, max-flow / alpha-expansion"
    default_work_size = 256
    quick_options = {"components": 3, "pixels_per_image": 500, "forest_trees": 20}
    PAIRWISE_GRID = (0.3, 1.0, 3.0, 10.0, 30.0)

    @dataclass
    class Options:
        components: int = 5
        pairwise: float = 10.0
        pixels_per_image: int = 2000
        tune: bool = True
        tune_images: int = 12
        relative: bool = True  # gmm: colour relative to the border mean
        unary: Literal["forest", "gmm"] = "forest"
        forest_trees: int = 60

    def __init__(self, num_classes: int, **kwargs: object) -> None:
        super().__init__(num_classes, **kwargs)
        if self.opts.unary not in ("forest", "gmm"):
            raise ValueError(f"graphcut: unary must be 'forest' or 'gmm', got {self.opts.unary!r}")
        if self.opts.pairwise < 0:
            raise ValueError(f"graphcut: pairwise must be >= 0, got {self.opts.pairwise}")

    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        if self.opts.unary == "forest":
            self.forest_ = PixelForest(self.num_classes, seed=self.seed, ignore_index=self.ignore_index,
                                       n_estimators=self.opts.forest_trees)
            self.forest_._fit(train, val)  # samples are already at the working size
        else:
            self._fit_gmms(train)
        self.pairwise_ = self.opts.pairwise
        held_out = (val or train)[: self.opts.tune_images]
        if self.opts.tune and held_out:
            unaries = [self._log_post(s.image) for s in held_out]
            scores = [
                selection_score([alpha_expansion(-lp, contrast_weights(s.image, weight)) for s, lp in zip(held_out, unaries)],
                               held_out, self.num_classes, self.ignore_index)
                for weight in self.PAIRWISE_GRID
            ]
            self.pairwise_ = self.PAIRWISE_GRID[best_index(scores)]

    def _fit_gmms(self, train: list[Sample]) -> None:
        rng = np.random.default_rng(self.seed)
        xs: list[list[np.ndarray]] = [[] for _ in range(self.num_classes)]
        counts = np.zeros(self.num_classes)
        for s in train:
            feats = _features(s.image, self.opts.relative)
            valid = s.valid(self.ignore_index).ravel()
            mask = s.mask.ravel()
            for k in range(self.num_classes):
                idx = np.flatnonzero((mask == k) & valid)
                counts[k] += idx.size
                if idx.size:
                    xs[k].append(feats[rng.choice(idx, size=min(idx.size, self.opts.pixels_per_image), replace=False)])
        self.log_prior_ = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0))
        self.gmms_: list[GaussianMixture | None] = []
        for k in range(self.num_classes):
            x = np.concatenate(xs[k]) if xs[k] else np.empty((0, 3))
            if len(x) < 2:  # a class absent from training gets no model and never wins
                self.gmms_.append(None)
                continue
            gmm = GaussianMixture(min(self.opts.components, len(x)), covariance_type="full", reg_covar=1e-3,
                                  random_state=self.seed)
            self.gmms_.append(gmm.fit(x))

    def _log_post(self, image: np.ndarray) -> np.ndarray:
        """``(C, H, W)`` unnormalised log posterior ``log p(x | c) + log p(c)``."""
        if self.opts.unary == "forest":
            return np.log(np.clip(self.forest_._predict_proba(image), 1e-4, 1.0)).astype(np.float64)
        h, w = image.shape[:2]
        feats = _features(image, self.opts.relative)
        out = np.full((self.num_classes, h * w), -1e6)
        for k, gmm in enumerate(self.gmms_):
            if gmm is not None:
                out[k] = gmm.score_samples(feats) + self.log_prior_[k]
        return out.reshape(self.num_classes, h, w)

    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        log_post = self._log_post(image)
        unary = -(log_post - log_post.max(axis=0, keepdims=True))  # shift per pixel: same cut, small numbers
        labels = alpha_expansion(unary, contrast_weights(image, self.pairwise_))
        return _cut_proba(labels, log_post)

    def config(self) -> dict[str, object]:
        return {**super().config(), "pairwise_used": getattr(self, "pairwise_", None)}


@METHODS.register("grabcut")
class GrabCut(Method):
    """GrabCut (Rother, Kolmogorov & Blake 2004) from a box derived from the image, never from the truth.

    The box is the image minus a ``margin`` on each side: pixels outside it are background for sure (the
    object of a single-object photograph, such as a PH2 lesion, is framed by it), pixels inside are
    unknown. Foreground and background Gaussian mixtures start from inside and outside the box; each
    iteration refits them to the current labelling and recomputes the min cut. The only thing read from the
    training split is which class surrounds the object (the class most frequent in the frame of the
    training masks), as otsu reads its polarity; lesions that reach the image border are cut at the box.

    Options:
        margin: Width of the sure-background frame, as a fraction of each side (used as is without ``tune``).
        tune: Choose the margin from ``MARGIN_GRID`` by the selection score (``segbench.methods.tuning``) on the validation split (else training).
        tune_images: At most this many images are used for tuning.
        components: Gaussians per mixture.
        iterations: Refit-and-cut rounds.
        pairwise: Weight of the contrast-sensitive Potts term (GrabCut's gamma).
        samples: Pixels per class sampled to refit each mixture.
    """

    description = "GrabCut: iterated fg/bg GMMs + graph cut from an image-border box (no training)"
    needs_training = False  # it reads the training masks' frame class only, and works without any
    binary_only = True
    default_work_size = 192
    quick_options = {"iterations": 2, "tune_images": 4}

    @dataclass
    class Options:
        margin: float = 0.1
        components: int = 5
        iterations: int = 3
        pairwise: float = 10.0
        samples: int = 2000
        tune: bool = True
        tune_images: int = 12

    MARGIN_GRID = (0.05, 0.1, 0.15, 0.2)

    def _fit(self, train: list[Sample], val: list[Sample] | None) -> None:
        if not 0 < self.opts.margin < 0.5:
            raise ValueError(f"grabcut: margin must be in (0, 0.5), got {self.opts.margin}")
        # Like otsu's polarity, the one thing read from the training labels: which class surrounds the object
        # (the class most frequent in the frame). PH2: skin (0) around a lesion; ISBI: cells (1) around membranes.
        self.margin_ = self.opts.margin
        votes = np.zeros(2)
        for s in train:
            frame = self._frame(*s.mask.shape) & s.valid(self.ignore_index)
            votes += np.bincount(s.mask[frame].astype(np.int64), minlength=2)[:2]
        self.surround_ = int(np.argmax(votes)) if votes.any() else 0
        held_out = (val or train)[: self.opts.tune_images]
        if self.opts.tune and held_out:  # the margin, as otsu's channel: by the selection score on held-out images
            scores = []
            for margin in self.MARGIN_GRID:
                self.margin_ = margin
                preds = [self._predict_proba(s.image).argmax(axis=0) for s in held_out]
                scores.append(selection_score(preds, held_out, 2, self.ignore_index))
            self.margin_ = self.MARGIN_GRID[best_index(scores)]

    def _frame(self, h: int, w: int) -> np.ndarray:
        """``(h, w) bool``: the sure-background frame outside the box."""
        mh, mw = max(1, round(self.margin_ * h)), max(1, round(self.margin_ * w))
        frame = np.ones((h, w), bool)
        frame[mh : h - mh, mw : w - mw] = False
        return frame

    def _predict_proba(self, image: np.ndarray) -> np.ndarray:
        out = self._grabcut(image)  # (surround, object)
        return out if self.surround_ == 0 else np.ascontiguousarray(out[::-1])

    def _grabcut(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        rng = np.random.default_rng(self.seed)
        feats = _features(image)
        sure_bg = self._frame(h, w).ravel()
        fg = ~sure_bg
        gmms = [GaussianMixture(self.opts.components, covariance_type="full", reg_covar=1e-3, max_iter=10,
                                warm_start=True, random_state=self.seed) for _ in range(2)]
        log_lik = np.zeros((2, h * w))
        labels = fg.astype(np.int64)
        edges = contrast_weights(image, self.opts.pairwise)  # the image does not change between rounds
        for _ in range(self.opts.iterations):
            for k, members in enumerate((~fg, fg)):
                idx = np.flatnonzero(members)
                if idx.size < 2 * self.opts.components:  # one side vanished: nothing left to separate
                    return np.stack([np.ones((h, w), np.float32), np.zeros((h, w), np.float32)])
                pick = rng.choice(idx, size=min(idx.size, self.opts.samples), replace=False)
                with warnings.catch_warnings():  # few EM steps per round by design: GrabCut refits every round
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    log_lik[k] = gmms[k].fit(feats[pick]).score_samples(feats)
            unary = -(log_lik - log_lik.max(axis=0, keepdims=True))
            unary[1, sure_bg] = 1e5  # hard constraint: outside the box is background
            labels = alpha_expansion(unary.reshape(2, h, w), edges).ravel()
            if np.array_equal(labels == 1, fg):
                break
            fg = labels == 1
        log_post = log_lik.copy()
        log_post[1, sure_bg] = -1e6
        return _cut_proba(labels.reshape(h, w), log_post.reshape(2, h, w))

    def config(self) -> dict[str, object]:
        return {**super().config(), "margin_used": getattr(self, "margin_", None), "surround_class": getattr(self, "surround_", None)}
