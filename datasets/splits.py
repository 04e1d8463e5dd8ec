"""Train/val/test splits: seeded and stratified, or read from a CSV split file; nested training subsets."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segbench.datasets.base import SegmentationDataset
from segbench.datasets.errors import DataError
from segbench.files import write_atomic

__all__ = [
    "SPLITS",
    "make_split",
    "make_folds",
    "train_subset",
    "stratify_keys",
    "read_split_file",
    "write_split_file",
    "dataset_split",
    "dataset_folds",
    "split_file_problems",
]

SPLITS = ("train", "val", "test")
#: A split file's value for an image left out of the run on purpose.
EXCLUDE = "exclude"


def stratify_keys(dataset: SegmentationDataset, ids: Sequence[str], *, bins: int = 4) -> list[int]:
    """One stratum per image from its mask alone.

    Binary datasets: the quantile bin of the foreground fraction (small, medium, large lesions...).
    Multi-class: the most frequent class other than class 0.
    """
    fractions, dominant = [], []
    for sample_id in ids:
        mask = dataset.load_mask(sample_id)
        counts = np.bincount(mask[mask != dataset.ignore_index].ravel(), minlength=dataset.num_classes)
        total = max(1, counts.sum())
        fractions.append(counts[1:].sum() / total)
        dominant.append(int(np.argmax(counts[1:])) + 1 if counts[1:].any() else 0)
    if dataset.num_classes > 2:
        return dominant
    edges = np.quantile(fractions, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, fractions, side="right").tolist()


def make_split(
    ids: Sequence[str],
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    strata: Sequence[int] | None = None,
) -> dict[str, list[str]]:
    """Seeded split of ``ids`` into train/val/test.

    With ``strata``, images are ordered by stratum (random order within each) and dealt out so that every
    split's running count tracks its fraction: each stratum is then divided in the same proportions.
    The same ids, seed, fractions and strata always give the same split.
    """
    fractions = tuple(float(f) for f in fractions)  # type: ignore[assignment]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6 or fractions[0] == 0 or fractions[2] == 0:
        raise ValueError(f"split fractions {fractions} must be three non-negative numbers summing to 1, train and test > 0")
    if len(ids) < 3:
        raise DataError(f"{len(ids)} image(s) cannot be split into train/val/test; a dataset needs at least 3")
    rng = np.random.default_rng(seed)
    dealt = _deal(_stratified_order(len(ids), strata, rng), fractions, rng)
    return {name: sorted(ids[i] for i in part) for name, part in zip(SPLITS, dealt)}


def _stratified_order(n: int, strata: Sequence[int] | None, rng: np.random.Generator) -> list[int]:
    """Indices ordered by stratum, in random order within each."""
    keys = list(strata) if strata is not None else [0] * n
    return sorted(range(n), key=lambda i: (keys[i], rng.random()))


def _deal(order: Sequence[int], fractions: Sequence[float], rng: np.random.Generator) -> list[list[int]]:
    """Deal ``order`` out so that every part's running count tracks its fraction (so each stratum of a
    stratified order is divided in the same proportions)."""
    counts = np.zeros(len(fractions))
    target = np.asarray(fractions, dtype=float)
    out: list[list[int]] = [[] for _ in fractions]
    for k, i in enumerate(order, start=1):
        deficit = target * k - counts
        deficit[target == 0] = -np.inf
        j = int(np.argmax(deficit + rng.random(len(fractions)) * 1e-9))  # tiny noise breaks ties at random, seeded
        counts[j] += 1
        out[j].append(i)
    return out


def make_folds(
    ids: Sequence[str],
    folds: int,
    *,
    seed: int = 0,
    val_fraction: float = 0.25,
    strata: Sequence[int] | None = None,
) -> list[dict[str, list[str]]]:
    """``folds`` train/val/test splits whose test parts partition ``ids`` (K-fold cross-validation).

    Images are ordered by stratum (random order within each) and dealt out to the folds in turn, so every
    fold holds its share of each stratum. Fold ``k`` tests on its own images; its val part is carved from the
    other folds' images (``val_fraction`` of them, stratified the same way) and the rest trains.
    """
    if folds < 2:
        raise ValueError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val fraction {val_fraction} must be in [0, 1)")
    if len(ids) < 2 * folds:
        raise DataError(f"{len(ids)} image(s) cannot be split into {folds} folds; give at least {2 * folds} or fewer folds")
    rng = np.random.default_rng(seed)
    order = _stratified_order(len(ids), strata, rng)
    test_parts = [order[k::folds] for k in range(folds)]
    out = []
    for k in range(folds):
        held = set(test_parts[k])
        rest = [i for i in order if i not in held]  # keeps the stratified order for carving val
        train, val = _deal(rest, (1 - val_fraction, val_fraction), rng)
        out.append({"train": sorted(ids[i] for i in train), "val": sorted(ids[i] for i in val),
                    "test": sorted(ids[i] for i in test_parts[k])})
    return out


def train_subset(ids: Sequence[str], fraction: float, *, seed: int, strata: Sequence[int] | None = None) -> list[str]:
    """A seeded share of the training images, nested across fractions, for label-efficiency runs.

    The ids (sorted first, so the caller's order does not matter) are put in one seeded random order and the
    subset is its first ``max(1, round(fraction * len(ids)))`` images (halves rounded up): for one seed the
    0.1 subset lies inside the 0.25 subset, which lies inside the 0.5 one. With ``strata`` (one key per id,
    e.g. ``stratify_keys``) the order deals the strata out in proportion, so every prefix keeps their mix.

    Args:
        ids: The training part's image ids.
        fraction: Share to keep, in (0, 1]; 1.0 keeps every id.
        seed: Seed of the order (the run's seed: each seed draws its own nested subsets).
        strata: Optional stratum of each id, in the order of ``ids``.

    Returns:
        The chosen ids in the order of ``ids``.

    Raises:
        ValueError: ``fraction`` outside (0, 1], no ids, or ``strata`` of another length.
    """
    if isinstance(fraction, bool) or not 0 < fraction <= 1:
        raise ValueError(f"train fraction {fraction!r} must be in (0, 1], e.g. 0.1, 0.25, 0.5 or 1.0")
    if not ids:
        raise ValueError("train_subset needs at least one training image; the training part is empty")
    if strata is not None and len(strata) != len(ids):
        raise ValueError(f"train_subset got {len(strata)} strata for {len(ids)} ids; give one stratum per id")
    keys = dict(zip(ids, strata)) if strata is not None else dict.fromkeys(ids, 0)
    rng = np.random.default_rng(seed)
    groups: dict[int, list[str]] = {}
    for i in sorted(keys):
        groups.setdefault(keys[i], []).append(i)
    queues = {k: list(rng.permutation(v)) for k, v in sorted(groups.items())}
    share = {k: len(v) / len(keys) for k, v in queues.items()}
    taken = dict.fromkeys(queues, 0)
    order: list[str] = []
    for n in range(1, len(keys) + 1):
        # The stratum furthest behind its share of the first n images goes next (ties: the smaller key).
        k = max((k for k in queues if taken[k] < len(queues[k])), key=lambda k: (share[k] * n - taken[k], -k))
        order.append(str(queues[k][taken[k]]))
        taken[k] += 1
    keep = set(order[: max(1, int(np.floor(fraction * len(keys) + 0.5)))])
    return [i for i in ids if i in keep]


def read_split_file(path: str | Path, ids: Sequence[str]) -> dict[str, list[str]]:
    """Read a CSV with columns ``image_id,split`` (split in train/val/test, or ``exclude``: left out on purpose);
    ``split_file_problems`` refuses a file that leaves other images out."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found; give a CSV with columns image_id,split")
    known = set(ids)
    out: dict[str, list[str]] = {name: [] for name in SPLITS}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image_id", "split"} <= set(reader.fieldnames):
            raise DataError(f"{path}: header is {reader.fieldnames}; the split file needs columns image_id,split")
        for line, row in enumerate(reader, start=2):
            image_id, split = row["image_id"].strip(), row["split"].strip()
            if split not in (*SPLITS, EXCLUDE):
                raise DataError(f"{path}:{line}: split {split!r} is not one of train, val, test, {EXCLUDE}")
            if image_id not in known:
                raise DataError(f"{path}:{line}: image_id {image_id!r} is not in the dataset; fix the id or remove the row")
            out.setdefault(split, []).append(image_id)
    seen = [i for v in out.values() for i in v]
    if len(seen) != len(set(seen)):
        dup = next(i for i in seen if seen.count(i) > 1)
        raise DataError(f"{path}: image_id {dup!r} is listed more than once; give each image one split")
    if not out["train"] or not out["test"]:
        raise DataError(f"{path}: the split file needs at least one train and one test image")
    return {name: out[name] for name in SPLITS}


def split_file_problems(path: str | Path | None, ids: Sequence[str]) -> list[str]:
    """A split file that leaves images of the dataset out (neither a split nor ``exclude``): one problem with the
    count and the first names; its other errors are raised by ``read_split_file``."""
    if path is None or not Path(path).is_file():
        return []
    with Path(path).open(newline="") as f:
        listed = {(row.get("image_id") or "").strip() for row in csv.DictReader(f)}
    left = [i for i in ids if i not in listed]
    if not left:
        return []
    shown = ", ".join(repr(i) for i in left[:5]) + (", ..." if len(left) > 5 else "")
    return [f"--split-file {path} leaves {len(left)} of {len(ids)} image(s) out ({shown}); give each a split "
            f"(train, val, test, or {EXCLUDE} to leave it out on purpose)"]


def write_split_file(split: dict[str, list[str]], path: str | Path) -> None:
    """Write ``split`` as ``image_id,split`` rows, atomically (a reader never sees half a split)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image_id", "split"])
            for name in SPLITS:
                writer.writerows([i, name] for i in split[name])

    write_atomic(path, write)


def dataset_split(
    dataset: SegmentationDataset,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_file: str | Path | None = None,
) -> dict[str, list[str]]:
    """The split the runner uses: the split file if given, else the dataset's own split, else a stratified seeded one."""
    ids = dataset.ids()
    if split_file is not None:
        return read_split_file(split_file, ids)
    if (own := dataset.predefined_split()) is not None:
        return {name: list(own.get(name, [])) for name in SPLITS}
    return make_split(ids, seed=seed, fractions=fractions, strata=stratify_keys(dataset, ids))


def dataset_folds(
    dataset: SegmentationDataset,
    folds: int,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    split_file: str | Path | None = None,
) -> list[dict[str, list[str]]]:
    """The runner's K-fold splits: stratified as ``dataset_split`` stratifies; each fold's val part takes the
    share ``val / (train + val)`` of ``fractions`` from its training images."""
    if split_file is not None or dataset.predefined_split() is not None:
        source = f"--split-file {split_file}" if split_file is not None else f"dataset {dataset.name!r}'s own split"
        raise DataError(f"--folds cannot be combined with {source}: cross-validation makes its own splits; drop one")
    ids = dataset.ids()
    train, val, _ = (float(f) for f in fractions)
    return make_folds(ids, folds, seed=seed, val_fraction=val / (train + val), strata=stratify_keys(dataset, ids))
