"""Datasets behind one interface; importing this package registers every built-in dataset."""

from segbench.datasets.base import DATASETS, IGNORE_INDEX, Sample, SampleList, SegmentationDataset, build_dataset
from segbench.datasets.errors import DataError

# Importing a module registers the datasets it defines.
from segbench.datasets import camvid, folder, isbi, mads, ph2, synthetic  # noqa: E402,F401

__all__ = ["DATASETS", "IGNORE_INDEX", "DataError", "Sample", "SampleList", "SegmentationDataset", "build_dataset"]
