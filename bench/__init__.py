"""segbench: compare classical and deep semantic-segmentation methods under one protocol."""

__version__ = "0.1.0"
__all__ = ["__version__"]
