"""Methods and post-processing stages; importing this package registers every built-in one."""

from segbench.methods.base import (
    METHODS,
    STAGES,
    IncompatibleError,
    Method,
    Pipeline,
    Stage,
    build_method,
    labels_to_proba,
    split_spec,
)

# Importing a module registers what it defines (one module per method family).
from segbench.methods import deeplab, fcn, pixel_classifier, segnet, sliding_window, threshold, tta, unet  # noqa: E402,F401

__all__ = [
    "METHODS",
    "STAGES",
    "IncompatibleError",
    "Method",
    "Pipeline",
    "Stage",
    "build_method",
    "labels_to_proba",
    "split_spec",
]
