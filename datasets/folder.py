"""Any folder of images and masks: ``<root>/images/*`` matched to ``<root>/masks/*`` by file stem.

Optional, beside them in ``<root>``:

- ``colors.csv``: a colour-to-class map for RGB masks (format in ``ColourMap``);
- ``ignore/<stem>.png``: per-image ignore masks, nonzero = pixel left out of training and metrics;
- ``fov/<stem>.png``: per-image field-of-view masks, nonzero = inside the view; pixels outside are left out.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from segbench.datasets.base import DATASETS, IGNORE_INDEX, Sample, SegmentationDataset
from segbench.datasets.io import IMAGE_SUFFIXES, DataError, index_images, read_image, read_mask, read_raw_mask
from segbench.datasets.masks import MASK_MODES, MaskRule, decide_rule

__all__ = ["ColourMap", "ImageFolder"]

_AUTO = "auto"


@dataclass(frozen=True)
class ColourMap:
    """RGB colour -> class index, read from a small CSV file.

    Format: a header row, then one row per colour; columns ``r,g,b,class_name`` (0..255 each) and
    optionally ``class_index``::

        r,g,b,class_name
        0,0,0,background
        255,0,0,lesion
        0,255,0,lesion        # several colours may share a class
        255,255,255,ignore    # the name "ignore" marks void: left out of training and metrics

    Without ``class_index``, classes are numbered in the order their names first appear (``ignore``
    excluded). With it, every row gives its index, each index has one name, and the indices run 0..C-1
    without gaps. Blank lines and lines starting with ``#`` are skipped.

    Attributes:
        path: The file it was read from (named in errors).
        codes: ``(K,)`` sorted ``r << 16 | g << 8 | b`` of the known colours.
        labels: ``(K,)`` class index of each code (``ignore_index`` for void colours).
        class_names: Names in class-index order.
    """

    path: Path
    codes: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @classmethod
    def read(cls, path: str | Path, *, ignore_index: int = IGNORE_INDEX) -> "ColourMap":
        """Parse a colour map file; every error names the file and line."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: colour map not found; give a CSV with columns r,g,b,class_name")
        with path.open(newline="") as f:
            lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
        reader = csv.DictReader(lines)
        fields = [c.strip() for c in reader.fieldnames or []]
        if not {"r", "g", "b", "class_name"} <= set(fields):
            raise DataError(
                f"{path}: header is {fields}; a colour map needs columns r,g,b,class_name (and optionally class_index)"
            )
        has_index = "class_index" in fields
        names: dict[int, str] = {}
        by_code: dict[int, int] = {}
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").split("#")[0].strip() for k, v in row.items()}
            try:
                rgb = [int(row[c]) for c in "rgb"]
                index = int(row["class_index"]) if has_index else None
            except ValueError:
                what = "r, g, b and class_index" if has_index else "r, g and b"
                raise DataError(f"{path}:{line}: {what} must be integers, got {row}") from None
            if any(not 0 <= v <= 255 for v in rgb):
                raise DataError(f"{path}:{line}: colour {rgb} is outside 0..255")
            name = row["class_name"]
            if not name:
                raise DataError(f"{path}:{line}: class_name is empty; name the class (or write ignore for void)")
            code = rgb[0] << 16 | rgb[1] << 8 | rgb[2]
            if code in by_code:
                raise DataError(f"{path}:{line}: colour {rgb} is listed twice; give each colour one class")
            if name == "ignore":
                by_code[code] = ignore_index
                continue
            if index is None:
                index = next((i for i, n in names.items() if n == name), len(names))
            if index < 0 or index == ignore_index:
                raise DataError(
                    f"{path}:{line}: class_index {index} is not a class; use 0..C-1 (void colours: class_name ignore)"
                )
            if names.setdefault(index, name) != name:
                raise DataError(f"{path}:{line}: class_index {index} is named both {names[index]!r} and {name!r}; use one name")
            by_code[code] = index
        if len(names) < 2:
            raise DataError(f"{path}: {len(names)} class(es) listed; a segmentation dataset needs at least 2")
        if sorted(names) != list(range(len(names))):
            raise DataError(f"{path}: class indices {sorted(names)} have gaps; number the classes 0..{len(names) - 1}")
        codes = np.array(sorted(by_code), dtype=np.int64)
        labels = np.array([by_code[c] for c in codes.tolist()], dtype=np.int64)
        return cls(path, codes, labels, tuple(names[i] for i in range(len(names))))

    def apply(self, rgb: np.ndarray, source: Path) -> np.ndarray:
        """``(H, W, 3)`` (or ``(H, W)`` grey, read as equal channels) colours -> ``(H, W) uint8`` classes.

        Raises:
            DataError: a colour that the map lacks, naming ``source``, the colour and the fix.
        """
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[..., None], 3, axis=2)
        if rgb.max(initial=0) > 255:
            raise DataError(f"{source}: mask values exceed 255, so they are not RGB colours; save the mask as 8-bit RGB")
        rgb = rgb.astype(np.int64)
        codes = rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]
        pos = np.clip(np.searchsorted(self.codes, codes), 0, len(self.codes) - 1)
        known = self.codes[pos] == codes
        if not known.all():
            bad = np.unique(codes[~known])
            shown = [[int(c >> 16), int(c >> 8 & 255), int(c & 255)] for c in bad[:5]]
            raise DataError(
                f"{source}: {int((~known).sum())} pixel(s) have colour(s) {shown}{' ...' if bad.size > 5 else ''} that "
                f"{self.path.name} does not list; add a row r,g,b,class_name for each (class_name ignore for void)"
            )
        return self.labels[pos].astype(np.uint8 if self.labels.max() <= 255 else np.int32)


@DATASETS.register("folder")
class ImageFolder(SegmentationDataset):
    """Images in ``<root>/images/`` and masks in ``<root>/masks/``, paired by file stem.

    Masks are read by one rule per dataset, ``mask_mode`` (``segbench.datasets.masks`` has the details):
    ``binary`` (0 and one foreground value: 1, 255 or 65535), ``labels`` (class indices, 255 = ignore),
    ``palette`` (palette PNGs, the index is the class), ``colours`` (RGB masks and a colour map file, see
    ``ColourMap``), or ``auto``, decided once from the whole dataset (``mask_rule.describe()`` says how). A mask
    whose values do not fit the rule is refused, naming its file and the values. The class count comes from
    ``class_names``, ``num_classes`` or the colour map, never from the largest mask value.

    Pixels are left out of training and metrics where the mask holds ``ignore_value`` (set to
    ``ignore_index``), where a colour maps to ``ignore``, where ``<root>/ignore/<stem>.png`` is nonzero, and
    where ``<root>/fov/<stem>.png`` is zero; the last two fill ``Sample.ignore``. When an ``ignore`` or
    ``fov`` folder is used, every image needs its mask there.

    Args:
        root: The folder holding ``images/`` and ``masks/``.
        class_names: Names of the classes in index order; default: ``background, foreground`` for binary masks,
            else ``class_0 .. class_{C-1}`` with C from ``num_classes`` (labels and palette masks need one of them).
        num_classes: Number of classes when names are not given.
        mask_mode: ``"auto"``, ``"binary"``, ``"labels"``, ``"palette"`` or ``"colours"``.
        binary_threshold: Binary masks only: values at or above it are foreground (e.g. 128 for masks saved as
            JPEG); None: a binary mask must hold exactly 0 and the dataset's foreground value.
        colors: Colour map file (absolute or relative to ``root``); ``"auto"``: ``<root>/colors.csv`` if it
            exists; None: no colour map.
        ignore_value: A mask value that marks pixels to ignore (e.g. 128 in a 0/128/255 mask); None: only
            ``ignore_index`` (255) in label masks.
        ignore_dir: Folder of ignore masks (nonzero = ignore), absolute or relative to ``root``; ``"auto"``:
            ``<root>/ignore`` if it exists; None: none.
        fov_dir: Folder of field-of-view masks (zero = ignore), like ``ignore_dir``; ``"auto"``: ``<root>/fov``.
        strict: True: raise on the first missing mask or duplicate stem. False: record each in
            ``index_problems()`` and leave those images out (``segbench validate``).
    """

    description = "any <root>/images + <root>/masks folder (binary, label, palette or colour masks; ignore masks)"

    def __init__(
        self,
        root: str | Path | None,
        *,
        class_names: Sequence[str] | None = None,
        num_classes: int | None = None,
        mask_mode: Literal["auto", "binary", "labels", "palette", "colours"] = "auto",
        binary_threshold: int | None = None,
        colors: str | Path | None = _AUTO,
        ignore_value: int | None = None,
        ignore_dir: str | Path | None = _AUTO,
        fov_dir: str | Path | None = _AUTO,
        strict: bool = True,
    ) -> None:
        if root is None:
            raise DataError(f"{self.name}: no folder given; use --datasets {self.name}:/path/to/root or --data-dir")
        if mask_mode not in MASK_MODES:
            raise ValueError(f"{self.name}: mask_mode {mask_mode!r} is not one of {', '.join(MASK_MODES)}")
        is_int = isinstance(ignore_value, (int, np.integer)) and not isinstance(ignore_value, bool)
        if ignore_value is not None and (not is_int or ignore_value < 0):
            raise ValueError(
                f"{self.name}: ignore_value={ignore_value!r} is not valid; give a non-negative integer mask value or None"
            )
        self.root = Path(root)
        self._problems: list[DataError] = []
        sink = None if strict else self._problems
        images = index_images(self.root / "images", "images", problems=sink)
        masks = index_images(self.root / "masks", "masks", problems=sink)
        if not images:
            raise DataError(
                f"{self.root / 'images'}: no image files ({', '.join(IMAGE_SUFFIXES)}); add images or fix the path"
            )
        self._images = self._paired(images, masks, self.root / "masks", "mask", strict)
        self._masks = {k: masks[k] for k in self._images}
        self._ignore_dirs: list[tuple[Path, bool, dict[str, Path]]] = []
        for option, default, nonzero_ignores in ((ignore_dir, "ignore", True), (fov_dir, "fov", False)):
            folder = self._optional(option, default)
            if folder is not None:
                found = index_images(folder, f"{default} masks", problems=sink)
                self._images = self._paired(self._images, found, folder, f"{default} mask", strict)
                self._ignore_dirs.append((folder, nonzero_ignores, found))
        self._masks = {k: self._masks[k] for k in self._images}
        colour_file = self._optional(colors, "colors.csv", is_file=True)
        self._colours = ColourMap.read(colour_file, ignore_index=self.ignore_index) if colour_file else None
        if mask_mode == "colours" and self._colours is None:
            raise DataError(f"{self.root}: mask_mode=colours needs a colour map; add {self.root / 'colors.csv'} or set colors=FILE")
        if self._colours is not None and mask_mode not in ("auto", "colours"):
            raise ValueError(f"{self.name}: mask_mode={mask_mode} but {colour_file} maps colours to classes; drop one")
        if self._colours is not None and (class_names is not None or num_classes is not None):
            raise ValueError(
                f"{self.name}: class names come from {colour_file}; drop class_names/num_classes or the colour map"
            )
        self._class_names = tuple(class_names) if class_names is not None else None
        self._num_classes = num_classes
        self._mode = mask_mode
        self._threshold = binary_threshold
        self._ignore_value = None if ignore_value is None else int(ignore_value)
        self._settings = {
            "colors": str(colour_file) if colour_file else None,
            "ignore_value": self._ignore_value,
            "ignore_dirs": [str(d) for d, _, _ in self._ignore_dirs],
        }

    # -- indexing ---------------------------------------------------------------------------------------

    def _optional(self, option: str | Path | None, default: str, *, is_file: bool = False) -> Path | None:
        """Resolve an ``"auto"``/None/path option to a path that exists, or None."""
        if option is None:
            return None
        if option == _AUTO:
            path = self.root / default
            return path if (path.is_file() if is_file else path.is_dir()) else None
        path = Path(option) if Path(option).is_absolute() else self.root / option
        if not path.exists():
            raise DataError(f"{path}: not found; fix the {self.name} option or create it")
        return path

    def _paired(self, images: dict[str, Path], others: dict[str, Path], folder: Path, what: str, strict: bool) -> dict[str, Path]:
        missing = [k for k in images if k not in others]
        errors = [f"{images[k]}: no {what} in {folder}; add {folder.name}/{k}.png or remove the image" for k in missing]
        if errors and strict:
            more = f" ({len(errors) - 1} more image(s) lack one too)" if len(errors) > 1 else ""
            raise DataError(errors[0] + more)
        self._problems += [DataError(e) for e in errors]
        return {k: p for k, p in images.items() if k in others}

    def index_problems(self) -> list[DataError]:
        return list(self._problems)

    # -- classes ----------------------------------------------------------------------------------------

    def _scan(self) -> tuple[dict[Path, np.ndarray], dict[Path, bool]]:
        """Each readable mask's unique values and whether it is a palette PNG (unreadable ones fail on their
        own when loaded). Decoded masks are cached, so the later loads are cheap."""
        values, palette = {}, {}
        paths = list(self._masks.values())
        for path in tqdm(paths, desc=f"{self.name}: reading masks", leave=False, disable=len(paths) < 500 or None):
            try:
                values[path] = np.unique(read_mask(path))
            except DataError:
                continue
            with Image.open(path) as img:  # the header only
                palette[path] = img.mode == "P"
        return values, palette

    @cached_property
    def mask_rule(self) -> MaskRule | None:
        """How mask values become classes, decided once (None: a colour map decides)."""
        if self._colours is not None:
            return None
        names = self._class_names
        num_classes = len(names) if names is not None else self._num_classes
        needs_scan = self._threshold is None and (self._mode in ("auto", "binary", "palette"))
        values, palette = self._scan() if needs_scan else ({}, None)
        try:
            return decide_rule(self._mode, values, num_classes=num_classes, palette=palette,
                               binary_threshold=self._threshold, ignore_value=self._ignore_value,
                               ignore_index=self.ignore_index)
        except DataError as exc:
            raise DataError(f"{self.root / 'masks'}: {exc}") from None

    classes_from_user = True

    def mask_file(self, sample_id: str) -> str:
        return str(self._masks[sample_id])

    def stored_mask_values(self) -> list[int] | None:
        if self._colours is not None:
            return None  # colours: the classes they map to are what to show
        values: set[int] = set()
        for path in self._masks.values():
            try:
                values.update(np.unique(read_mask(path)).tolist())  # cached: decoded once per file
            except DataError:
                continue  # reported on its own
        return sorted(values)

    def describe_masks(self) -> str:
        """One line: how this dataset's masks are read, and why (what ``auto`` decided)."""
        if self._colours is not None:
            return f"masks read as colours by {self._colours.path}"
        return self.mask_rule.describe()

    @cached_property
    def class_names(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._colours is not None:
            return self._colours.class_names
        if self._class_names is not None:
            return self._class_names
        if self._num_classes is not None:
            return tuple(f"class_{i}" for i in range(self._num_classes))
        self.mask_rule  # decides the rule now; without names only a binary rule is possible, else this raises
        return ("background", "foreground")

    def config(self) -> dict[str, object]:
        mode = "colours" if self.mask_rule is None else self.mask_rule.mode
        return {"root": str(self.root), "mask_mode": mode, "class_names": list(self.class_names),
                **({"binary_threshold": self._threshold} if self._threshold is not None else {}), **self._settings}

    # -- loading ----------------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        return list(self._images)

    def load_mask(self, sample_id: str) -> np.ndarray:
        path = self._masks[sample_id]
        if self._colours is not None:
            return self._colours.apply(read_raw_mask(path), path)
        return self.mask_rule.apply(read_mask(path), path)

    def _ignore(self, sample_id: str, shape: tuple[int, int]) -> np.ndarray | None:
        out = None
        for _folder, nonzero_ignores, files in self._ignore_dirs:
            path = files[sample_id]
            region = read_mask(path) != 0
            if region.shape != shape:
                raise DataError(
                    f"{path}: ignore mask is {region.shape[1]}x{region.shape[0]} but image {self._images[sample_id].name} "
                    f"is {shape[1]}x{shape[0]}; resize it (nearest) to the image"
                )
            region = region if nonzero_ignores else ~region
            out = region if out is None else out | region
        return out

    def load(self, sample_id: str) -> Sample:
        if sample_id not in self._images:
            raise KeyError(f"{self.name} has no image {sample_id!r}")
        image = read_image(self._images[sample_id])
        mask = self.load_mask(sample_id)
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{self._masks[sample_id]}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                f"{self._images[sample_id].name} is {image.shape[1]}x{image.shape[0]}; resize the mask (nearest) to the image"
            )
        return Sample(sample_id, image, mask, self._ignore(sample_id, mask.shape))
