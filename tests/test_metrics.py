"""Tests for ``segbench.measure.metrics``, with scikit-learn as the independent oracle.

What scikit-learn 1.9 does with classes listed in ``labels`` (checked in ``test_sklearn_undefined_sets``):
``precision_score``, ``recall_score`` and ``f1_score`` accept ``zero_division=np.nan`` and then give NaN exactly
where our rule does (never predicted / absent from truth / absent from both), but ``jaccard_score`` rejects
``zero_division=np.nan`` and can only substitute 0 or 1 for a class absent from both. So the oracle runs each
sklearn score with ``zero_division=0`` and ``=1``: entries that differ are the ones sklearn itself finds
undefined, and those are set to NaN. Those sets turn out to be exactly ours, so arrays are compared with NaN
positions included. ``balanced_accuracy_score`` averages recall over the classes present in the truth (and
warns when the prediction has a class the truth lacks), which is our NaN-excluding mean of recall.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from sklearn import metrics as skm

from segbench.measure.metrics import (
    ARRAY_KEYS,
    SCALAR_KEYS,
    ConfusionMatrix,
    class_mean,
    confusion_matrix,
    dice_from_confusion,
    flatten_scores,
    iou_from_confusion,
    per_image_scores,
    scores_from_confusion,
)

# Our functions must never warn; sklearn calls silence their own warnings locally in the oracle.
pytestmark = pytest.mark.filterwarnings("error")

IGNORE = 255


# --------------------------------------------------------------------------------------------- oracle


def _sk_per_class(score_fn: Callable[..., np.ndarray], t: np.ndarray, p: np.ndarray, num_classes: int) -> np.ndarray:
    """sklearn's per-class score over ``labels=range(C)``, NaN exactly where sklearn substitutes zero_division."""
    labels = list(range(num_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo = score_fn(t, p, labels=labels, average=None, zero_division=0)
        hi = score_fn(t, p, labels=labels, average=None, zero_division=1)
    return np.where(lo == hi, lo, np.nan)


def _sk_macro(score_fn: Callable[..., float], t: np.ndarray, p: np.ndarray, labels: np.ndarray) -> float:
    """sklearn's macro average over ``labels``, chosen so that every label is defined (no substitution)."""
    if labels.size == 0:
        return np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo = score_fn(t, p, labels=labels, average="macro", zero_division=0)
        hi = score_fn(t, p, labels=labels, average="macro", zero_division=1)
    assert lo == hi, "oracle bug: a label in the macro average is undefined"
    return float(lo)


def _sk_scores(t: np.ndarray, p: np.ndarray, num_classes: int) -> dict[str, np.ndarray | float]:
    """Every score of ``scores_from_confusion`` from sklearn, on 1-D arrays of the valid pixels."""
    in_truth, in_pred, in_either = np.unique(t), np.unique(p), np.union1d(t, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balanced_accuracy: "y_pred contains classes not in y_true"
        balanced = skm.balanced_accuracy_score(t, p)
    return {
        "cm": skm.confusion_matrix(t, p, labels=list(range(num_classes))),
        "iou": _sk_per_class(skm.jaccard_score, t, p, num_classes),
        "dice": _sk_per_class(skm.f1_score, t, p, num_classes),
        "precision": _sk_per_class(skm.precision_score, t, p, num_classes),
        "recall": _sk_per_class(skm.recall_score, t, p, num_classes),
        "pixel_accuracy": skm.accuracy_score(t, p),
        "mean_pixel_accuracy": balanced,
        # The means, independently: macro averages over exactly the classes where each score is defined.
        "mean_iou": _sk_macro(skm.jaccard_score, t, p, in_either),
        "mean_dice": _sk_macro(skm.f1_score, t, p, in_either),
        "mean_precision": _sk_macro(skm.precision_score, t, p, in_pred),
        "mean_recall": _sk_macro(skm.recall_score, t, p, in_truth),
    }


def _valid(truth: np.ndarray, ignore_index: int | None, ignore_mask: np.ndarray | None) -> np.ndarray:
    valid = np.ones(truth.shape, dtype=bool)
    if ignore_index is not None:
        valid &= truth != ignore_index
    if ignore_mask is not None:
        valid &= ~ignore_mask
    return valid


def _assert_nan_rule(cm: np.ndarray, scores: dict) -> None:
    """Our documented rule, read straight off the counts: NaN exactly where the denominator is zero."""
    in_truth, in_pred = cm.sum(axis=1) > 0, cm.sum(axis=0) > 0
    np.testing.assert_array_equal(np.isnan(scores["iou"]), ~(in_truth | in_pred))
    np.testing.assert_array_equal(np.isnan(scores["dice"]), ~(in_truth | in_pred))
    np.testing.assert_array_equal(np.isnan(scores["precision"]), ~in_pred)
    np.testing.assert_array_equal(np.isnan(scores["recall"]), ~in_truth)
    # A class predicted but absent from the truth is wrong everywhere it is predicted: 0, not NaN.
    np.testing.assert_array_equal(scores["iou"][in_pred & ~in_truth], 0.0)


def _assert_matches_sklearn(
    truth: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    *,
    ignore_index: int | None = IGNORE,
    ignore_mask: np.ndarray | None = None,
) -> None:
    cm, scores = per_image_scores(truth, pred, num_classes, ignore_index=ignore_index, ignore_mask=ignore_mask)
    valid = _valid(truth, ignore_index, ignore_mask)
    expected = _sk_scores(truth[valid], pred[valid], num_classes)

    assert cm.dtype == np.int64 and cm.shape == (num_classes, num_classes)
    np.testing.assert_array_equal(cm, expected["cm"])
    for key in ARRAY_KEYS:
        assert scores[key].dtype == np.float64 and scores[key].shape == (num_classes,)
        # equal_nan: NaN must sit at the same classes, i.e. sklearn's undefined set is ours.
        np.testing.assert_allclose(scores[key], expected[key], rtol=1e-12, equal_nan=True, err_msg=key)
    for key in SCALAR_KEYS:
        assert isinstance(scores[key], float), key
        np.testing.assert_allclose(scores[key], expected[key], rtol=1e-12, equal_nan=True, err_msg=key)
    # The means are also the NaN-excluding means of our own per-class arrays.
    for key in ARRAY_KEYS:
        np.testing.assert_allclose(scores[f"mean_{key}"], np.nanmean(scores[key]), rtol=1e-12)
    assert scores["mean_pixel_accuracy"] == scores["mean_recall"]
    _assert_nan_rule(cm, scores)


# ---------------------------------------------------------------------------------------------- cases


def _random_case(
    seed: int, num_classes: int, ignore: str, *, truth_classes: int | None = None, pred_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Random truth, a prediction that agrees on ~60% of pixels, and ignored pixels as asked."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(4, 24, size=2))
    truth = rng.integers(0, truth_classes or num_classes, size=shape)
    noise = rng.integers(0, pred_classes or num_classes, size=shape)
    pred = np.where(rng.random(shape) < 0.6, np.minimum(truth, (pred_classes or num_classes) - 1), noise)
    if ignore in ("index", "both"):
        truth[rng.random(shape) < 0.2] = IGNORE
    mask = rng.random(shape) < 0.2 if ignore in ("mask", "both") else None
    return truth, pred, mask


@pytest.mark.parametrize("ignore", ["none", "index", "mask", "both"])
@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("seed", range(4))
def test_random_masks_match_sklearn(seed: int, num_classes: int, ignore: str) -> None:
    truth, pred, mask = _random_case(seed, num_classes, ignore)
    _assert_matches_sklearn(truth, pred, num_classes, ignore_mask=mask)


@pytest.mark.parametrize("ignore", ["none", "both"])
@pytest.mark.parametrize("seed", range(3))
def test_random_masks_with_missing_classes_match_sklearn(seed: int, ignore: str) -> None:
    # C=4, truth uses {0, 1}, prediction {0, 1, 2}: class 2 only predicted, class 3 absent from both.
    truth, pred, mask = _random_case(seed, 4, ignore, truth_classes=2, pred_classes=3)
    cm, scores = per_image_scores(truth, pred, 4, ignore_mask=mask)
    assert cm[2].sum() == 0 and cm[:, 2].sum() > 0 and cm[3].sum() == cm[:, 3].sum() == 0
    assert np.isnan(scores["iou"][3]) and scores["iou"][2] == 0.0 and np.isnan(scores["recall"][2])
    _assert_matches_sklearn(truth, pred, 4, ignore_mask=mask)


_FG = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])

EDGE_CASES = {
    "empty_prediction": (_FG, np.zeros_like(_FG), 2),
    "empty_truth": (np.zeros_like(_FG), _FG, 2),
    "prediction_equals_truth": (np.arange(12).reshape(3, 4) % 4, np.arange(12).reshape(3, 4) % 4, 4),
    "single_class_present_binary": (np.zeros((3, 4), int), np.zeros((3, 4), int), 2),
    "single_class_present_multiclass": (np.full((3, 4), 2), np.full((3, 4), 2), 4),
    "class_absent_from_both": (_FG, np.roll(_FG, 1, axis=1), 4),
    "one_by_one_wrong": (np.array([[1]]), np.array([[0]]), 2),
    "one_by_one_right": (np.array([[1]]), np.array([[1]]), 2),
}


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_cases_match_sklearn(name: str) -> None:
    truth, pred, num_classes = EDGE_CASES[name]
    _assert_matches_sklearn(truth, pred, num_classes)


def test_edge_case_values() -> None:
    """The edge cases' defining values, stated by hand (the comparison above checks everything else)."""
    _, s = per_image_scores(_FG, np.zeros_like(_FG), 2)  # empty prediction
    assert np.isnan(s["precision"][1]) and s["recall"][1] == 0 and s["iou"][1] == 0 and s["dice"][1] == 0
    _, s = per_image_scores(np.zeros_like(_FG), _FG, 2)  # empty truth
    assert np.isnan(s["recall"][1]) and s["precision"][1] == 0 and s["iou"][1] == 0
    assert s["mean_pixel_accuracy"] == s["recall"][0] == 8 / 12
    _, s = per_image_scores(np.zeros((3, 4), int), np.zeros((3, 4), int), 2)  # single class present
    assert s["mean_iou"] == s["pixel_accuracy"] == 1.0 and np.isnan(s["iou"][1])
    _, s = per_image_scores(np.array([[1]]), np.array([[0]]), 2)  # 1x1
    assert s["pixel_accuracy"] == 0.0 and s["mean_iou"] == 0.0 and s["mean_precision"] == 0.0
    np.testing.assert_array_equal(s["precision"], [0.0, np.nan])


def test_all_pixels_ignored() -> None:
    # sklearn refuses empty input, so this one is checked against the rule by hand.
    truth = np.full((3, 4), IGNORE)
    pred = np.ones((3, 4), dtype=int)
    for kwargs in ({}, {"ignore_mask": np.ones((3, 4), dtype=bool), "ignore_index": None}):
        t = np.zeros((3, 4), dtype=int) if kwargs else truth
        cm, scores = per_image_scores(t, pred, 3, **kwargs)
        np.testing.assert_array_equal(cm, np.zeros((3, 3), dtype=np.int64))
        for key in ARRAY_KEYS:
            assert np.isnan(scores[key]).all(), key
        for key in SCALAR_KEYS:
            assert np.isnan(scores[key]), key


def test_sklearn_undefined_sets() -> None:
    """Pin down sklearn 1.9's own handling of a listed label that is undefined, next to ours."""
    # Class 0: TP 1, FN 1. Class 1: TP 1, FP 1, FN 1. Class 2: absent from both. Class 3: predicted only.
    t = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 1, 3])
    labels = [0, 1, 2, 3]
    _, ours = per_image_scores(t, p, 4)
    nan = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_f1 = skm.f1_score(t, p, labels=labels, average=None, zero_division=np.nan)
        sk_precision = skm.precision_score(t, p, labels=labels, average=None, zero_division=np.nan)
        sk_recall = skm.recall_score(t, p, labels=labels, average=None, zero_division=np.nan)
        sk_jaccard_0 = skm.jaccard_score(t, p, labels=labels, average=None, zero_division=0)
        sk_jaccard_1 = skm.jaccard_score(t, p, labels=labels, average=None, zero_division=1)
    np.testing.assert_allclose(sk_f1, [2 / 3, 1 / 2, nan, 0], equal_nan=True)
    np.testing.assert_allclose(sk_precision, [1, 1 / 2, nan, 0], equal_nan=True)
    np.testing.assert_allclose(sk_recall, [1 / 2, 1 / 2, nan, nan], equal_nan=True)
    # jaccard substitutes zero_division only for the class absent from both (class 2).
    np.testing.assert_allclose(sk_jaccard_0, [1 / 2, 1 / 3, 0, 0])
    np.testing.assert_allclose(sk_jaccard_1, [1 / 2, 1 / 3, 1, 0])
    # Ours, by the one rule:
    np.testing.assert_allclose(ours["dice"], sk_f1, equal_nan=True)
    np.testing.assert_allclose(ours["precision"], sk_precision, equal_nan=True)
    np.testing.assert_allclose(ours["recall"], sk_recall, equal_nan=True)
    np.testing.assert_allclose(ours["iou"], [1 / 2, 1 / 3, nan, 0], equal_nan=True)
    assert ours["mean_iou"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    # Balanced accuracy ignores the predicted-only class 3, as our nanmean of recall does.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert skm.balanced_accuracy_score(t, p) == ours["mean_pixel_accuracy"] == 0.5


# ------------------------------------------------------------------------------------ hand-computed


def test_hand_computed_binary_3x3() -> None:
    truth = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    pred = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])
    # Class 1: TP 2 (top-left pair), FP 1 (top-right), FN 1 (middle-left). Class 0: TP 5, FP 1, FN 1.
    cm, s = per_image_scores(truth, pred, 2)
    np.testing.assert_array_equal(cm, [[5, 1], [1, 2]])
    np.testing.assert_allclose(s["iou"], [5 / 7, 2 / 4])
    np.testing.assert_allclose(s["dice"], [10 / 12, 4 / 6])
    np.testing.assert_allclose(s["precision"], [5 / 6, 2 / 3])
    np.testing.assert_allclose(s["recall"], [5 / 6, 2 / 3])
    assert s["pixel_accuracy"] == pytest.approx(7 / 9)
    assert s["mean_pixel_accuracy"] == pytest.approx(0.75)
    assert s["mean_iou"] == pytest.approx(17 / 28)
    assert s["mean_dice"] == pytest.approx(0.75)


_TRUTH_2X4 = np.array([[0, 0, 1, IGNORE], [1, 1, 0, IGNORE]])
_PRED_2X4 = np.array([[0, 2, 1, 1], [1, 0, 0, 2]])
# Valid pixels (truth, pred): (0,0) (0,2) (1,1) (1,1) (1,0) (0,0).
_CM_2X4 = [[2, 0, 1], [1, 2, 0], [0, 0, 0]]


def _check_2x4(cm: np.ndarray, s: dict) -> None:
    np.testing.assert_array_equal(cm, _CM_2X4)
    nan = np.nan
    # Class 0: TP 2 FP 1 FN 1. Class 1: TP 2 FP 0 FN 1. Class 2: TP 0 FP 1 FN 0 (predicted, absent from truth).
    np.testing.assert_allclose(s["iou"], [1 / 2, 2 / 3, 0])
    np.testing.assert_allclose(s["dice"], [2 / 3, 4 / 5, 0])
    np.testing.assert_allclose(s["precision"], [2 / 3, 1, 0])
    np.testing.assert_allclose(s["recall"], [2 / 3, 2 / 3, nan], equal_nan=True)
    assert s["pixel_accuracy"] == pytest.approx(4 / 6)
    assert s["mean_pixel_accuracy"] == pytest.approx(2 / 3)
    assert s["mean_iou"] == pytest.approx(7 / 18)
    assert s["mean_dice"] == pytest.approx(22 / 45)
    assert s["mean_precision"] == pytest.approx(5 / 9)
    assert s["mean_recall"] == pytest.approx(2 / 3)


def test_hand_computed_2x4_with_ignore_index() -> None:
    _check_2x4(*per_image_scores(_TRUTH_2X4, _PRED_2X4, 3))


def test_hand_computed_2x4_with_ignore_mask() -> None:
    truth = np.where(_TRUTH_2X4 == IGNORE, 0, _TRUTH_2X4)
    mask = _TRUTH_2X4 == IGNORE
    _check_2x4(*per_image_scores(truth, _PRED_2X4, 3, ignore_index=None, ignore_mask=mask))


def test_hand_computed_class_absent_from_both() -> None:
    _, s = per_image_scores(np.array([[0, 1]]), np.array([[0, 1]]), 3)
    np.testing.assert_array_equal(s["iou"], [1, 1, np.nan])
    np.testing.assert_array_equal(s["precision"], [1, 1, np.nan])
    assert s["mean_iou"] == s["mean_dice"] == s["mean_precision"] == s["mean_recall"] == 1.0


def test_ignore_index_inside_class_range() -> None:
    # ignore_index=0 leaves out class-0 truth pixels, so row 0 is empty (and class 0 can only be predicted).
    cm = confusion_matrix(np.array([[0, 1], [1, 0]]), np.array([[1, 1], [0, 0]]), 2, ignore_index=0)
    np.testing.assert_array_equal(cm, [[0, 0], [1, 1]])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
def test_dtypes_and_layouts_agree(dtype: type) -> None:
    truth, pred, mask = _random_case(7, 4, "both")
    expected = confusion_matrix(truth, pred, 4, ignore_mask=mask)
    got = confusion_matrix(truth.astype(dtype), pred.astype(dtype), 4, ignore_mask=mask)
    np.testing.assert_array_equal(got, expected)
    # Non-contiguous views (transposed, strided) count the same pixels.
    got_t = confusion_matrix(truth.astype(dtype).T, pred.astype(dtype).T, 4, ignore_mask=mask.T)
    np.testing.assert_array_equal(got_t, expected)
    t, p, m = truth[::2, ::3], pred[::2, ::3], mask[::2, ::3]
    valid = _valid(t, IGNORE, m)
    got_s = confusion_matrix(t.astype(dtype), p.astype(dtype), 4, ignore_mask=m)
    np.testing.assert_array_equal(got_s, skm.confusion_matrix(t[valid], p[valid], labels=list(range(4))))


def test_bool_masks() -> None:
    truth = np.array([[True, False], [True, True]])
    pred = np.array([[True, True], [False, True]])
    np.testing.assert_array_equal(confusion_matrix(truth, pred, 2), [[0, 1], [1, 2]])


# --------------------------------------------------------------------------------------- validation


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\).*same resolution"):
        confusion_matrix(np.zeros((3, 4), int), np.zeros((4, 3), int), 2)
    with pytest.raises(ValueError, match=r"ignore_mask shape \(2, 2\).*\(3, 4\).*same resolution"):
        confusion_matrix(np.zeros((3, 4), int), np.zeros((3, 4), int), 2, ignore_mask=np.zeros((2, 2), bool))


def test_prediction_out_of_range() -> None:
    truth = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=r"prediction contains value\(s\) 2 outside 0\.\.1 \(1 pixel"):
        confusion_matrix(truth, np.array([[0, 1, 2], [0, 0, 0]]), 2)
    with pytest.raises(ValueError, match=r"value\(s\) -1, 5 outside 0\.\.3.*num_classes=4"):
        confusion_matrix(truth, np.array([[0, -1, 5], [5, 0, 0]]), 4)


def test_truth_out_of_range() -> None:
    pred = np.zeros((2, 3), int)
    with pytest.raises(ValueError, match=r"truth contains value\(s\) 7 outside 0\.\.3.*ignore_index=255"):
        confusion_matrix(np.array([[0, 7, 1], [2, 3, 255]]), pred, 4)
    # With no ignore_index, 255 is just an out-of-range class; the message says how to fix it.
    with pytest.raises(ValueError, match=r"value\(s\) 255 outside 0\.\.1.*pass ignore_index"):
        confusion_matrix(np.array([[0, 1, 255], [0, 0, 0]]), pred, 2, ignore_index=None)
    with pytest.raises(ValueError, match=r"value\(s\) -3 outside"):
        confusion_matrix(np.array([[0, -3, 1], [0, 0, 0]]), pred, 2)


def test_out_of_range_truth_is_fine_where_ignored() -> None:
    truth = np.array([[0, 9], [1, 1]])
    mask = np.array([[False, True], [False, False]])
    cm = confusion_matrix(truth, np.array([[0, 0], [1, 0]]), 2, ignore_mask=mask)
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])


def test_bad_types_and_arguments() -> None:
    ok = np.zeros((2, 2), int)
    with pytest.raises(TypeError, match=r"pred must hold integer class indices, got dtype float64"):
        confusion_matrix(ok, np.zeros((2, 2)), 2)
    with pytest.raises(TypeError, match=r"ignore_mask must be a bool array, got dtype int64.*astype\(bool\)"):
        confusion_matrix(ok, ok, 2, ignore_mask=ok)
    with pytest.raises(ValueError, match=r"num_classes must be >= 1, got 0"):
        confusion_matrix(ok, ok, 0)
    with pytest.raises(TypeError, match=r"num_classes must be an int, got float 2\.0"):
        ConfusionMatrix(2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"square.*\(2, 3\)"):
        scores_from_confusion(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"non-negative.*-1"):
        scores_from_confusion(np.array([[1, -1], [0, 1]]))
    _, scores = per_image_scores(ok, ok, 2)
    with pytest.raises(ValueError, match=r"got 3 class name\(s\).*for 2 classes"):
        flatten_scores(scores, ["a", "b", "c"])


# -------------------------------------------------------------------------------------------- warnings


def test_no_warnings_leak() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per_image_scores(np.full((2, 2), IGNORE), np.zeros((2, 2), int), 3)  # all ignored: 0/0 everywhere
        per_image_scores(np.zeros((2, 2), int), np.zeros((2, 2), int), 4)  # classes absent from both
        per_image_scores(_FG, np.zeros_like(_FG), 2)  # never predicted
        per_image_scores(np.array([[1]]), np.array([[0]]), 2)
        scores_from_confusion(np.zeros((0, 0), np.int64))
        metric = ConfusionMatrix(3)
        metric.compute()  # nothing seen yet
        metric.update(np.full((2, 2), IGNORE), np.zeros((2, 2), int))
        metric.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
        result = metric.compute()  # classes 1 and 2 NaN in every image
        flatten_scores(result["per_image"], ["a", "b", "c"], prefix="val_")
    assert np.isnan(result["per_image"]["iou"][1:]).all()


# --------------------------------------------------------------------------------------- flatten_scores


def test_flatten_scores() -> None:
    _, scores = per_image_scores(_TRUTH_2X4, _PRED_2X4, 3)
    flat = flatten_scores(scores, ["bg", "road", "car"], prefix="val_")
    assert list(flat) == [
        "val_pixel_accuracy", "val_mean_pixel_accuracy", "val_mean_iou", "val_mean_dice", "val_mean_precision",
        "val_mean_recall",
        "val_iou_bg", "val_iou_road", "val_iou_car", "val_dice_bg", "val_dice_road", "val_dice_car",
        "val_precision_bg", "val_precision_road", "val_precision_car",
        "val_recall_bg", "val_recall_road", "val_recall_car",
    ]  # fmt: skip
    assert all(type(v) is float for v in flat.values())
    assert flat["val_iou_road"] == pytest.approx(2 / 3) and flat["val_mean_iou"] == pytest.approx(7 / 18)
    assert np.isnan(flat["val_recall_car"])
    assert set(flatten_scores(scores, ["a", "b", "c"])) >= {"mean_iou", "iou_a", "recall_c"}


# ------------------------------------------------------------------------------------ ConfusionMatrix


def _images(seed: int, num_classes: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    images = [_random_case(seed * 10 + i, num_classes, ignore) for i, ignore in enumerate(["none", "index", "both"])]
    images.append(_random_case(seed * 10 + 5, num_classes, "mask", truth_classes=1))  # some classes absent
    images.append((np.full((3, 3), IGNORE), np.zeros((3, 3), int), None))  # fully ignored: scores nowhere
    return images


@pytest.mark.parametrize("num_classes", [2, 4])
@pytest.mark.parametrize("seed", range(3))
def test_accumulator_matches_sklearn(seed: int, num_classes: int) -> None:
    metric = ConfusionMatrix(num_classes)
    images = _images(seed, num_classes)
    cms = [metric.update(t, p, ignore_mask=m) for t, p, m in images]
    assert metric.num_images == len(images)
    np.testing.assert_array_equal(metric.matrix, np.sum(cms, axis=0))
    result = metric.compute()

    # "dataset": sklearn on the valid pixels of all images concatenated.
    valids = [_valid(t, IGNORE, m) for t, _, m in images]
    all_t = np.concatenate([t[v] for (t, _, _), v in zip(images, valids)])
    all_p = np.concatenate([p[v] for (_, p, _), v in zip(images, valids)])
    pooled = _sk_scores(all_t, all_p, num_classes)
    np.testing.assert_array_equal(metric.matrix, pooled["cm"])
    for key in (*ARRAY_KEYS, *SCALAR_KEYS):
        np.testing.assert_allclose(result["dataset"][key], pooled[key], rtol=1e-12, equal_nan=True, err_msg=key)

    # "per_image": sklearn per image (the fully ignored one has no pixels: skipped), NaN-excluding mean.
    per_image = [_sk_scores(t[v], p[v], num_classes) for (t, p, _), v in zip(images, valids) if v.any()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN column is the NaN we expect
        for key in (*ARRAY_KEYS, *SCALAR_KEYS):
            expected = np.nanmean(np.array([s[key] for s in per_image], dtype=float), axis=0)
            np.testing.assert_allclose(result["per_image"][key], expected, rtol=1e-12, equal_nan=True, err_msg=key)


def test_accumulator_two_aggregations_differ_by_hand() -> None:
    metric = ConfusionMatrix(2)
    metric.update(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))  # class 1 IoU 1; class 0 absent: NaN
    metric.update(np.array([[1, 0]]), np.array([[0, 0]]))  # class 1 IoU 0; class 0 IoU 1/2
    result = metric.compute()
    # Pooled: class 1 TP 4, FN 1 -> 4/5; class 0 TP 1, FP 1 -> 1/2.
    np.testing.assert_allclose(result["dataset"]["iou"], [1 / 2, 4 / 5])
    # Per image: class 1 mean(1, 0) = 1/2; class 0 only defined in image 2 -> 1/2.
    np.testing.assert_allclose(result["per_image"]["iou"], [1 / 2, 1 / 2])
    # Scalars are averaged per image too: mean_iou per image is 1 (only class 1 defined) and 1/4.
    assert result["per_image"]["mean_iou"] == pytest.approx((1 + 1 / 4) / 2)
    assert result["dataset"]["mean_iou"] == pytest.approx((1 / 2 + 4 / 5) / 2)
    assert result["per_image"]["pixel_accuracy"] == pytest.approx((1 + 1 / 2) / 2)
    assert result["dataset"]["pixel_accuracy"] == pytest.approx(5 / 6)


def test_accumulator_reset_and_empty() -> None:
    metric = ConfusionMatrix(3)
    empty = metric.compute()
    for agg in ("dataset", "per_image"):
        assert all(np.isnan(empty[agg][k]).all() for k in (*ARRAY_KEYS, *SCALAR_KEYS))
        assert empty[agg]["iou"].shape == (3,)

    first = metric.update(_TRUTH_2X4, _PRED_2X4)
    metric.update(np.zeros((2, 2), int), np.full((2, 2), 2))
    metric.reset()
    assert metric.num_images == 0
    np.testing.assert_array_equal(metric.matrix, np.zeros((3, 3), np.int64))
    assert metric.update(_TRUTH_2X4, _PRED_2X4).tolist() == first.tolist()
    result = metric.compute()
    _check_2x4(metric.matrix, result["dataset"])
    _check_2x4(metric.matrix, result["per_image"])  # one image: both aggregations agree


def test_accumulator_matrix_is_a_copy() -> None:
    metric = ConfusionMatrix(2)
    metric.update(np.array([[0, 1]]), np.array([[0, 1]]))
    metric.matrix[0, 0] = 100
    np.testing.assert_array_equal(metric.matrix, np.eye(2, dtype=np.int64))


def test_stacked_iou_and_dice_match_sklearn_per_matrix():
    """The stacked form (used by the report's bootstrap) scores each matrix as sklearn scores its pixels."""
    rng = np.random.default_rng(11)
    pairs = [(rng.integers(0, 3, 60), rng.integers(0, 3, 60)) for _ in range(4)]
    pairs.append((np.zeros(60, int), np.ones(60, int)))  # class 2 absent from both: NaN, left out of the mean
    stack = np.stack([confusion_matrix(t, p, 3, ignore_index=None) for t, p in pairs]).reshape(5, 1, 3, 3)
    iou, dice = iou_from_confusion(stack), dice_from_confusion(stack)
    assert iou.shape == dice.shape == (5, 1, 3)
    for i, (t, p) in enumerate(pairs):
        ref = _sk_scores(t, p, 3)
        np.testing.assert_allclose(iou[i, 0], ref["iou"], equal_nan=True)
        np.testing.assert_allclose(dice[i, 0], ref["dice"], equal_nan=True)
        assert class_mean(iou)[i, 0] == pytest.approx(ref["mean_iou"])
        assert class_mean(dice)[i, 0] == pytest.approx(ref["mean_dice"])
