"""Shared fixtures; the builders they use live in helpers.py."""

from __future__ import annotations

import pytest

from helpers import write_camvid_dataset, write_folder_dataset, write_isbi_dataset, write_mads_dataset, write_ph2_dataset
from segbench.datasets import DATASETS
from segbench.datasets.cache import CACHE_ENV
from segbench.methods import METHODS, STAGES

#: What the project registers, read before any test module is imported. Tests add their own entries only
#: inside ``Registry.temporarily`` (in a fixture), so the registries hold exactly this at collection time and
#: after each module; ``_registries_restored`` fails a module that leaves something behind.
PROJECT_REGISTRIES = {"methods": METHODS.names(), "stages": STAGES.names(), "datasets": DATASETS.names()}


def _registries() -> dict[str, list[str]]:
    return {"methods": METHODS.names(), "stages": STAGES.names(), "datasets": DATASETS.names()}


def pytest_collection_finish(session):
    if _registries() != PROJECT_REGISTRIES:
        raise pytest.UsageError(
            f"a test module changed a registry at import time: {_registries()} != {PROJECT_REGISTRIES}; "
            "register test entries inside a fixture with Registry.temporarily(name, cls)"
        )


@pytest.fixture(autouse=True, scope="module")
def _registries_restored():
    yield
    assert _registries() == PROJECT_REGISTRIES, "this module left entries in a registry; use Registry.temporarily"

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
