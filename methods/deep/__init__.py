"""Deep methods: networks trained from scratch by one training loop (``training``), their layers and losses.

``DeepMethod`` (``method.py``) adapts a ``torch.nn.Module`` to the method interface; each architecture module
(``fcn``, ``unet``, ``segnet``, ``deeplab``, ``sliding_window``) registers its methods when imported.
"""

from segbench.methods.deep.method import CHECKPOINT_NAME, DeepMethod, DeepOptions

__all__ = ["CHECKPOINT_NAME", "DeepMethod", "DeepOptions"]
