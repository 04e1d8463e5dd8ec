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
from segbench.methods import (  # noqa: E402,F401
    crf,
    deeplab,
    fcn,
    graphcut,
    morph,
    pixel_classifier,
    segnet,
    sliding_window,
    slic,
    threshold,
    tta,
    unet,
)

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
