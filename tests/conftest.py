"""Shared fixtures; the builders they use live in helpers.py."""

from __future__ import annotations

import pytest

from helpers import write_camvid_dataset, write_folder_dataset, write_isbi_dataset, write_mads_dataset, write_ph2_dataset
from segbench.datasets import DATASETS
from segbench.datasets.cache import CACHE_ENV

#: How to build a small instance of each registered dataset. A new dataset adds its fixture here, and the
#: contract tests (tests/test_datasets.py) then check it like every other one.
DATASET_FIXTURES = {
    "synthetic": lambda tmp: DATASETS.get("synthetic")(None, num_images=8, size=(48, 40)),
    "synthetic-multiclass": lambda tmp: DATASETS.get("synthetic-multiclass")(None, num_images=8, size=(48, 40)),
    "folder": lambda tmp: DATASETS.get("folder")(write_folder_dataset(tmp / "folder")),
    "ph2": lambda tmp: DATASETS.get("ph2")(write_ph2_dataset(tmp / "ph2")),
    "camvid": lambda tmp: DATASETS.get("camvid")(write_camvid_dataset(tmp / "camvid")),
    "isbi2012": lambda tmp: DATASETS.get("isbi2012")(write_isbi_dataset(tmp / "isbi")),
    "mads": lambda tmp: DATASETS.get("mads")(write_mads_dataset(tmp / "mads")),
}


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests use their own array cache, never the user's ~/.cache/segbench (a test may still override it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("segbench-cache")))
        yield


@pytest.fixture(params=sorted(DATASETS.names()))
def any_dataset(request, tmp_path):
    name = request.param
    if name not in DATASET_FIXTURES:
        pytest.fail(f"dataset {name!r} is registered but has no fixture in tests/conftest.py DATASET_FIXTURES")
    return DATASET_FIXTURES[name](tmp_path)


@pytest.fixture(scope="session")
def tiny_binary():
    return DATASETS.get("synthetic")(None, num_images=10, size=(48, 40), seed=3)


@pytest.fixture(scope="session")
def tiny_multiclass():
    return DATASETS.get("synthetic-multiclass")(None, num_images=10, size=(48, 40), seed=3)
