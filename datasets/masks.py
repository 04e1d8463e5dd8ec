"""How a folder dataset's mask values become classes: one explicit rule per dataset (``mask_mode``).

- ``binary``: every mask holds 0 and one foreground value, the same in the whole dataset (1, 255, or 65535
  for 16-bit masks). Any other value is refused, naming the file and the values, unless the user asks for a
  threshold (``binary_threshold=128``: values at or above it are foreground; for JPEG-saved masks).
- ``labels``: grey values are class indices ``0..C-1``, 255 is ignore; C comes from ``class_names`` or
  ``num_classes``, never from the largest value found.
- ``palette``: as ``labels``, for palette PNGs (mode ``P``): the palette index is the class.
- ``colours``: RGB colours mapped to classes by a colour map file (``ColourMap``).
- ``auto``: decided once from the whole dataset, and the decision is said (``MaskRule.describe``): colours when
  there is a colour map; binary when every mask fits one binary value pair; labels (palette when every mask is
  a palette PNG) when class names are given; otherwise binary if most masks are binary (the others are then
  refused by name), else an error asking for the class names.

A value given as ``ignore_value`` marks pixels to ignore under every rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from segbench.datasets.errors import DataError

__all__ = ["MASK_MODES", "MaskRule", "decide_rule"]

MASK_MODES = ("auto", "binary", "labels", "palette", "colours")
#: Foreground values a binary dataset may use: 0/1, 0/255 (8-bit), 0/65535 (16-bit); on a tie (say, every
#: mask empty) the earlier one wins.
BINARY_FOREGROUNDS = (255, 1, 65535)


def _shown(values: Sequence[int], limit: int = 8) -> str:
    values = [int(v) for v in values]
    return str(values[:limit])[:-1] + (", ...]" if len(values) > limit else "]")


@dataclass(frozen=True)
class MaskRule:
    """The decided rule of one dataset.

    Attributes:
        mode: ``binary``, ``labels``, ``palette`` or ``colours``.
        num_classes: Classes the masks map to.
        foreground: Binary: the foreground value (1, 255 or 65535); None with a threshold.
        threshold: Binary: values at or above it are foreground (only when asked for).
        ignore_value: A mask value marking pixels to ignore, or None.
        ignore_index: The label ignored pixels get (255).
        reason: How the rule was chosen, for ``describe``.
    """

    mode: str
    num_classes: int
    foreground: int | None = None
    threshold: int | None = None
    ignore_value: int | None = None
    ignore_index: int = 255
    reason: str = "set by mask_mode"

    def allowed(self) -> str:
        """The values a mask may hold, in words."""
        extra = [] if self.ignore_value is None else [f"{self.ignore_value} (ignore_value)"]
        if self.mode == "binary":
            base = [f"any value (>= {self.threshold} is foreground)"] if self.threshold is not None else [f"0/{self.foreground}"]
        else:
            base = [f"0..{self.num_classes - 1}", f"{self.ignore_index} (ignore)"]
        return ", ".join(base + extra)

    def describe(self) -> str:
        """One line: the rule and why, e.g. ``mask_mode auto -> binary (0/255) ...``."""
        return f"masks read as {self.mode}: values {self.allowed()}; {self.reason}"

    def unexpected(self, values: np.ndarray) -> np.ndarray:
        """The values of ``values`` (a mask's unique values) that this rule does not accept."""
        values = np.asarray(values)
        if self.ignore_value is not None:
            values = values[values != self.ignore_value]
        if self.mode == "binary":
            return values[values < 0] if self.threshold is not None else values[(values != 0) & (values != self.foreground)]
        return values[((values < 0) | (values >= self.num_classes)) & (values != self.ignore_index)]

    def apply(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """``(H, W)`` mask values -> ``(H, W)`` class labels (ignored pixels ``ignore_index``).

        Raises:
            DataError: values the rule does not accept, naming ``path``, the values and the fixes.
        """
        bad = self.unexpected(np.unique(mask))
        if bad.size:
            raise DataError(f"{path}: unexpected mask value(s) {_shown(bad)}; {self.fix()}")
        void = mask == self.ignore_value if self.ignore_value is not None else None
        if self.mode == "binary":
            cut = self.threshold if self.threshold is not None else self.foreground
            labels = (mask >= cut).astype(np.uint8)
        else:
            labels = mask.astype(np.uint8 if self.num_classes <= 255 else np.int32)
        if void is not None:
            labels[void] = self.ignore_index
        return labels

    def fix(self) -> str:
        """What to do about a refused mask, in one clause."""
        if self.mode == "binary":
            return (f"this dataset's masks are binary {self.allowed()} ({self.reason}); fix the mask, threshold every "
                    "mask with --dataset-opt NAME.binary_threshold=128, or give class_names if they are class labels")
        return (f"this dataset's masks are {self.mode} {self.allowed()} ({self.reason}); relabel the mask, give a "
                "class name for every class (class_names=a,b,c), or set ignore_value")


def decide_rule(
    mode: str,
    values: Mapping[Path, np.ndarray],
    *,
    num_classes: int | None,
    palette: Mapping[Path, bool] | None = None,
    binary_threshold: int | None = None,
    ignore_value: int | None = None,
    ignore_index: int = 255,
) -> MaskRule:
    """Decide a dataset's rule from every mask's unique values (see the module docstring).

    Args:
        mode: One of ``MASK_MODES`` except ``colours`` (the caller handles colour maps).
        values: Each mask file's unique values.
        num_classes: From ``class_names``/``num_classes``, or None when not given.
        palette: Whether each mask file is a palette PNG (for ``palette``/``auto``); None: unknown.
        binary_threshold: Threshold binary masks at this value (only with ``binary`` or ``auto``).
        ignore_value: A mask value marking pixels to ignore.
        ignore_index: The label of ignored pixels.

    Raises:
        DataError: a rule that cannot apply to this dataset (labels without class names; palette masks
            that are not palette PNGs; no binary value pair that most masks share).
    """
    common = {"ignore_value": ignore_value, "ignore_index": ignore_index}
    if binary_threshold is not None:
        if mode not in ("auto", "binary") or num_classes not in (None, 2):
            raise DataError(f"binary_threshold={binary_threshold} applies to binary masks only; drop it or set mask_mode=binary")
        return MaskRule("binary", 2, threshold=int(binary_threshold), reason="thresholded as asked", **common)
    per_file = {p: np.asarray(v) if ignore_value is None else np.asarray(v)[np.asarray(v) != ignore_value] for p, v in values.items()}
    fits = {fg: [p for p, v in per_file.items() if np.isin(v, (0, fg)).all()] for fg in BINARY_FOREGROUNDS}
    foreground = max(BINARY_FOREGROUNDS, key=lambda fg: (len(fits[fg]), -BINARY_FOREGROUNDS.index(fg)))
    n = len(per_file)
    every_palette = bool(palette) and all(palette.values())
    if mode == "binary" or (mode == "auto" and num_classes in (None, 2) and len(fits[foreground]) == n):
        if num_classes not in (None, 2):
            raise DataError(f"mask_mode=binary gives 2 classes but {num_classes} class names were given; use mask_mode=labels")
        why = "set by mask_mode" if mode == "binary" else f"auto: all {n} masks hold only 0/{foreground}"
        return MaskRule("binary", 2, foreground=foreground, reason=why, **common)
    if mode in ("labels", "palette") or (mode == "auto" and num_classes is not None):
        if num_classes is None:
            raise DataError(f"mask_mode={mode} needs the classes: give class_names=a,b,c (or num_classes=N); the "
                            "class count is never guessed from the largest mask value")
        chosen = mode if mode != "auto" else ("palette" if every_palette else "labels")
        if chosen == "palette" and palette is not None:
            plain = sorted(str(p) for p, is_p in palette.items() if not is_p)
            if plain:
                raise DataError(f"{plain[0]}: not a palette PNG (mode P) but mask_mode=palette"
                                f"{f' ({len(plain) - 1} more)' if len(plain) > 1 else ''}; use mask_mode=labels")
        why = "set by mask_mode" if mode != "auto" else f"auto: {num_classes} class names given"
        return MaskRule(chosen, num_classes, reason=why, **common)
    # auto, no class names, and not every mask is binary: binary if most masks are, else ask for the classes.
    if 2 * len(fits[foreground]) > n:
        return MaskRule("binary", 2, foreground=foreground,
                        reason=f"auto: {len(fits[foreground])} of {n} masks hold only 0/{foreground}", **common)
    seen = np.unique(np.concatenate([v.ravel() for v in per_file.values()])) if per_file else np.array([], int)
    raise DataError(
        f"masks hold values {_shown(seen)}, not binary (0/1, 0/255 or 0/65535) in most files; if they are class "
        "labels give class_names=a,b,c (or num_classes=N), if binary set mask_mode=binary with binary_threshold=128"
    )
