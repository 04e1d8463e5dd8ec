"""Methods and post-processing stages; importing this package registers every built-in one."""

from segbench.methods.base import (
    METHODS,
    STAGES,
    IncompatibleError,
    Method,
    Pipeline,
    SetupError,
    Stage,
    build_method,
    labels_to_proba,
    split_spec,
)
from segbench.methods.prediction import Prediction

# Importing a module registers what it defines (one module per method family).
from segbench.methods.classical import constant, graphcut, pixel_classifier, slic, threshold  # noqa: E402,F401
from segbench.methods.deep import deeplab, fcn, segnet, sliding_window, unet, zoo  # noqa: E402,F401
from segbench.methods.stages import crf, morph, tta  # noqa: E402,F401

__all__ = [
    "METHODS",
    "STAGES",
    "IncompatibleError",
    "Method",
    "Pipeline",
    "Prediction",
    "SetupError",
    "Stage",
    "core_methods",
    "build_method",
    "labels_to_proba",
    "split_spec",
]


def core_methods() -> list[str]:
    """Registered methods that need no optional extra: what the default suite runs and the core's tests cover."""
    return [name for name in METHODS.names() if METHODS.get(name).extra is None]
