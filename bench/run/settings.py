"""Run settings, each declared once, in ``SETTINGS``.

A setting's row gives, with nothing else to edit:

- its ``segbench run`` flag (``add_flags``: ``--name-with-dashes``; an on/off flag for a bool; comma-separated
  values for a grid axis), its default and help;
- a value in ``RunConfig.settings`` (read as ``config.<field>``) and, where the cell needs it, in
  ``CellTask.settings`` (read as ``task.<name>``);
- what it decides (``decides``): ``"run"`` how the run goes (no key), ``"cell"`` a cell's scores but not its
  fit (the cell key), ``"fit"`` the fitted method (the cell key and the shared-base key, so pipelines never
  share a base fitted under another value); a ``method_option`` setting reaches the keys through the base
  method's options instead (and from there a deep method's checkpoint identity);
- ``axis``: each of its values is a cell of the grid (``RunConfig`` holds the list, a task one value).

A setting enters the keys only when it differs from its default (``keyed_at_default`` marks the few that
were always in the key), so adding one leaves every existing run's cell keys, and its resume, unchanged.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from segbench.datasets.transforms import parse_size
from segbench.measure.boundary import DEFAULT_TOLERANCE, check_tolerance
from segbench.methods import METHODS, split_spec
from segbench.methods.tiling import Tiling
from segbench.options import csv_of

__all__ = ["Setting", "SETTINGS", "add_flags", "from_args", "initial_values", "cell_entries", "fit_entries",
           "labels", "with_method_options", "tiling_of", "variants_of", "DEFAULT_SEVERITIES", "resolve_budget", "axis_values"]

Decides = Literal["run", "cell", "fit"]


@dataclass(frozen=True)
class Setting:
    """One run setting (see the module docstring)."""

    name: str
    default: Any
    help: str
    #: The flag's text -> the value (argparse ``type=``); None: an on/off flag (``--name``, or ``--no-name``
    #: where the default is True).
    parse: Callable[[str], Any] | None = None
    decides: Decides = "run"
    #: A grid axis: the flag takes comma-separated values, each its own cell.
    axis: bool = False
    #: A "run" setting the cell still needs (how it times or saves), so it travels in the task.
    worker: bool = False
    #: Given to the base method as this option where the method's ``Options`` declares it (``--opt`` wins);
    #: it enters the keys through the options.
    method_option: str | None = None
    #: Raises ValueError naming the flag and the fix; given ``RunConfig``'s value (the list for an axis).
    check: Callable[[Any], None] | None = None
    #: Its entries in the keys, from the cell's settings (default: ``{name: value}`` when not the default).
    key: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    keyed_at_default: bool = False
    #: Its part of the cell's folder name, when not at its default.
    label: Callable[[Any], str] | None = None
    #: ``RunConfig``'s name for it where that differs (an axis's plural).
    config_name: str | None = None
    metavar: str | None = None

    @property
    def field(self) -> str:
        return self.config_name or self.name

    @property
    def flag(self) -> str:
        name = self.name.replace("_", "-")
        return f"--no-{name}" if self.parse is None and self.default is True else f"--{name}"

    @property
    def in_task(self) -> bool:
        return self.decides != "run" or self.worker

    def initial(self) -> Any:
        """``RunConfig``'s value when not given."""
        return [self.default] if self.axis else copy.deepcopy(self.default)


# -- settings whose keys are shaped by more than their own value (kept as they always were) -------------------

def tiling_of(values: Mapping[str, Any]) -> Tiling | None:
    """The ``Tiling`` every method of the cell predicts with, or None (whole images)."""
    return Tiling(values["tile"], values["tile_overlap"]) if values["tile"] is not None else None


#: Corruption severities scored when ``--corruptions`` is given without ``--severities``.
DEFAULT_SEVERITIES = (1, 3, 5)


def variants_of(values: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """The ``(corruption, severity)`` test variants each cell is also scored on."""
    return tuple((c, s) for c in values["corruptions"] for s in (values["severities"] or DEFAULT_SEVERITIES))


def _tiling_key(values: Mapping[str, Any]) -> dict[str, Any]:
    tiling = tiling_of(values)
    return {"tiling": dataclasses.asdict(tiling)} if tiling else {}


def _variants_key(values: Mapping[str, Any]) -> dict[str, Any]:
    variants = variants_of(values)
    return {"variants": variants} if variants else {}


def _no_key(values: Mapping[str, Any]) -> dict[str, Any]:
    return {}  # enters with another setting's entry


def _size(text: str) -> Any:
    """A bad ``--size`` names the flag."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _check_fractions(fractions: list[float]) -> None:
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"--train-fraction {fractions}: give fractions in (0, 1], e.g. 0.25,0.5,1.0")


def _check_budget(budgets: list[float | None]) -> None:
    given = [b for b in budgets if b is not None]
    if any(not b > 0 for b in given) or len(set(budgets)) != len(budgets) or (given and len(given) != len(budgets)):
        raise ValueError(f"--budget-s {budgets}: give distinct budgets > 0 seconds, e.g. 30,90,270")


def _check_named_budget(budget: str | None) -> None:
    if budget not in (None, "converged"):
        raise ValueError(f"--budget {budget!r}: the only named budget is 'converged' (seconds go to --budget-s)")


def _check_positive(flag: str) -> Callable[[int | None], None]:
    def check(value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: give 1 or more")
    return check


def _check_precision(precision: str | None) -> None:
    if precision not in (None, "fp32", "bf16"):
        raise ValueError(f"--precision {precision!r}: choose fp32 or bf16")


#: What ``--budget converged`` means where ``--patience`` / ``--max-epochs`` are not given.
CONVERGED_PATIENCE, CONVERGED_MAX_EPOCHS = 10, 100


def _check_retries(retries: int) -> None:
    if retries < 0:
        raise ValueError(f"retries={retries} must be 0 or more")


SETTINGS: list[Setting] = [
    # -- what decides a fit
    Setting("size", None, "working resolution of every method and stage: longer side (256) or WxH (256x192); "
            "default: the dataset's protocol size (else each method's own)", parse=_size, decides="fit",
            keyed_at_default=True),
    Setting("quick", False, "small budgets (each method's quick_options): the default suite", decides="fit",
            keyed_at_default=True),
    Setting("train_fraction", 1.0, "comma-separated fractions of the training part, each a cell of the grid "
            "(nested subsets)", parse=float, decides="fit", axis=True, config_name="train_fractions",
            check=_check_fractions, label=lambda f: f"train{f:g}"),
    # A budget axis: a cell per budget for methods that take one (a method without the option runs once); no
    # label, so a single budget keeps the cell keys it always had.
    Setting("budget_s", None, "train every deep method for S seconds of optimiser work (CPU seconds on CPU; "
            "validation not counted), its learning-rate schedule laid out over them; several (30,90,270): a cell "
            "per budget", parse=float, decides="fit", axis=True, method_option="budget_s", check=_check_budget,
            metavar="S[,S...]"),
    Setting("patience", None, "epochs without a better validation score before every deep method stops "
            f"(default: each method's own; with --budget converged: {CONVERGED_PATIENCE})", parse=int, decides="fit",
            method_option="patience", check=_check_positive("--patience")),
    Setting("max_epochs", None, "the most epochs every deep method trains, its schedule laid out over them (its "
            f"'epochs'; default: each method's own; with --budget converged: {CONVERGED_MAX_EPOCHS})", parse=int,
            decides="fit", method_option="epochs", check=_check_positive("--max-epochs")),
    Setting("cooldown", None, "warm-up-stable-cooldown schedule for every deep method trained by epochs: the peak "
            "learning rate until --patience epochs pass without a better validation score, then a cosine cooldown "
            "to the floor over N epochs, then stop (default: the cosine laid over --max-epochs)", parse=int,
            decides="fit", method_option="cooldown_epochs", check=_check_positive("--cooldown"), metavar="N"),
    Setting("precision", None, "training precision of every deep method: bf16 (autocast to bfloat16 and "
            "channels-last where the CPU or GPU has bfloat16, else float32) or fp32 (default: each method's own, "
            "bf16)", parse=str, decides="fit", method_option="precision", check=_check_precision),
    Setting("tile", None, "predict in square tiles of this many pixels at the working size", parse=int,
            decides="fit", key=_tiling_key),
    Setting("tile_overlap", 64, "pixels shared by neighbouring tiles (default: 64)", parse=int, decides="fit",
            key=_no_key),
    # -- what decides a cell's scores, not its fit
    Setting("corruptions", [], "comma-separated test-image corruptions each cell is also scored on, e.g. "
            "gaussian_noise,jpeg", parse=csv_of(str), decides="cell", key=_variants_key),
    Setting("severities", None, "corruption severities 1..5, with --corruptions (default: 1,3,5)", parse=csv_of(int),
            decides="cell", key=_no_key),
    Setting("boundary_tolerance", DEFAULT_TOLERANCE, "boundary F1 matching distance: pixels (3) or percent of the "
            "image diagonal (default: 0.75%%)", decides="cell", parse=str, check=check_tolerance),
    Setting("cldice", False, "also score centreline Dice per class (thin structures such as vessels; ~0.5 s per "
            "768x576 image)", decides="cell"),
    # -- how the run goes
    Setting("budget", None, "converged: every deep method trains until its validation score has not improved for "
            f"--patience epochs ({CONVERGED_PATIENCE}), at most --max-epochs ({CONVERGED_MAX_EPOCHS}), instead of "
            "--budget-s", parse=str, check=_check_named_budget),
    Setting("warmup", 1, "untimed predictions before timing (default: 1)", parse=int, worker=True),
    Setting("save_predictions", False, "write each predicted label map as a PNG", worker=True),
    Setting("share_bases", True, "every pipeline fits its own base (default: pipelines on one base share its fit)"),
    Setting("threads", 1, "torch, BLAS/OpenMP and scikit-learn threads of every cell, whatever OMP_NUM_THREADS says "
            "(default: 1)", parse=int),
    Setting("retries", 1, "times a failed cell is tried again (default: 1)", parse=int, check=_check_retries),
]


def resolve_budget(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (by field) with ``--budget converged`` spelled out as the patience and epoch cap it stands for
    (where not given); raises ValueError where it meets ``--budget-s``."""
    if values.get("cooldown") is not None and any(b is not None for b in values["budget_s"]):
        raise ValueError("--cooldown and --budget-s exclude each other: a budget anneals over its seconds already")
    if values.get("budget") != "converged":
        return values
    if any(b is not None for b in values["budget_s"]):
        raise ValueError("--budget converged and --budget-s exclude each other: give one")
    return {**values, "patience": values["patience"] or CONVERGED_PATIENCE,
            "max_epochs": values["max_epochs"] or CONVERGED_MAX_EPOCHS}


def axis_values(setting: Setting, values: list[Any], method_spec: str) -> list[Any]:
    """The values of an axis ``setting`` that make cells of ``method_spec``: one (the default) where the setting
    reaches cells only as a method option the method does not declare (a classical method on a budget axis)."""
    if setting.method_option is None:
        return values
    declared = {f.name for f in dataclasses.fields(METHODS.get(split_spec(method_spec)[0]).Options)}
    return values if setting.method_option in declared else [setting.default]


def by_field() -> dict[str, Setting]:
    return {s.field: s for s in SETTINGS}


def initial_values(given: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting's ``RunConfig`` value: ``given`` (by field name) over the defaults.

    Raises:
        TypeError: a name that is no setting (listing the declared ones).
    """
    known = by_field()
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"unknown run setting(s) {unknown}; declared in segbench.run.settings: {sorted(known)}")
    return {name: copy.deepcopy(given[name]) if name in given else s.initial() for name, s in known.items()}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting."""
    for s in SETTINGS:
        if s.parse is None:
            parser.add_argument(s.flag, dest=s.field, action="store_false" if s.default else "store_true", help=s.help)
        else:
            parse = csv_of(s.parse) if s.axis else s.parse
            parser.add_argument(s.flag, dest=s.field, type=parse, default=s.initial(), help=s.help, metavar=s.metavar)


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings' values from parsed flags, by ``RunConfig`` field."""
    return {s.field: getattr(args, s.field) for s in SETTINGS}


def _entries(values: Mapping[str, Any], decides: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in SETTINGS:
        if s.decides not in decides or s.method_option:
            continue
        if s.key is not None:
            out.update(s.key(values))
        elif s.keyed_at_default or values[s.name] != s.default:
            out[s.name] = values[s.name]
    return out


def cell_entries(values: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's settings as they enter its key (``values``: the task's settings)."""
    return _entries(values, ("cell", "fit"))


def fit_entries(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide a fit, as they enter the shared-base key."""
    return _entries(values, ("fit",))


def labels(values: Mapping[str, Any]) -> list[str]:
    """The settings' parts of a cell's folder name."""
    return [s.label(values[s.name]) for s in SETTINGS if s.label and values[s.name] != s.default]


def with_method_options(method_spec: str, options: dict[str, dict[str, Any]],
                        values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``options`` plus each ``method_option`` setting not at its default, as the base method's option where its
    ``Options`` declares it (an explicit ``--opt METHOD.KEY`` wins). The options enter the keys, so they do too."""
    base = split_spec(method_spec)[0]
    declared = {f.name for f in dataclasses.fields(METHODS.get(base).Options)}
    given = {s.method_option: values[s.name] for s in SETTINGS
             if s.method_option in declared and values[s.name] != s.default}
    return {**options, base: {**given, **options.get(base, {})}} if given else options
