"""docs/architecture.md's "Where to add", tried: a method, a stage and a dataset added the documented way (one
module with the registering decorators, given to ``--import`` as a user does; the package's own ones are also
imported by their package's ``__init__``) run through a tiny grid and the report; the files the table names
are where the project looks. (A run setting: tests/test_settings.py.)"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pandas as pd
import pytest

import segbench.datasets
import segbench.methods
from conftest import DATASET_FIXTURES
from segbench.cli import main
from segbench.datasets import DATASETS
from segbench.methods import METHODS, STAGES

TOY_MODULE = '''
"""A user's additions, one module: a method, a stage and a dataset."""

import numpy as np

from segbench.datasets import DATASETS, Sample, SegmentationDataset
from segbench.methods import METHODS, STAGES, Method, Stage


@METHODS.register("toy-dark")
class ToyDark(Method):
    """Dark pixels are the lesion."""

    family = "classical"
    needs_training = False

    def _fit(self, train, val):
        pass

    def _predict_proba(self, image):
        fg = (image.mean(axis=2) < 128).astype(np.float32)
        return np.stack([1 - fg, fg])


@STAGES.register("toy-sharpen")
class ToySharpen(Stage):
    """Pushes probabilities towards 0 and 1."""

    def apply(self, image, proba):
        sharp = proba ** 2
        return (sharp / sharp.sum(axis=0, keepdims=True)).astype(np.float32)


@DATASETS.register("toy-squares")
class ToySquares(SegmentationDataset):
    """Dark squares on a light ground."""

    class_names = ("background", "square")
    work_size = 32

    def __init__(self, root=None, num_images: int = 8):
        self.num_images = num_images

    def ids(self):
        return [f"Square{i:02d}" for i in range(self.num_images)]

    def load(self, sample_id):
        i = int(sample_id[-2:])
        mask = np.zeros((24, 32), np.uint8)
        mask[4 + i % 5: 14 + i % 5, 6 + i: 18 + i] = 1
        image = np.where(mask[..., None] == 1, 60, 200).astype(np.uint8).repeat(3, axis=2)
        return Sample(sample_id, image, mask)

    def config(self):
        return {"num_images": self.num_images}
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """The user's module on disk; whatever it registers lasts for one test."""
    path = tmp_path / "toy_additions.py"
    path.write_text(TOY_MODULE)
    monkeypatch.chdir(tmp_path)
    with METHODS.restored(), STAGES.restored(), DATASETS.restored():
        yield str(path)
    sys.modules.pop("toy_additions", None)


def test_a_method_stage_and_dataset_added_the_documented_way_run_in_a_grid(toy_module, tmp_path, capsys):
    assert main(["list", "--import", toy_module]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("toy-dark", "toy-sharpen", "toy-squares"))
    out = tmp_path / "run"
    assert main(["run", "--import", toy_module, "--datasets", "toy-squares,synthetic", "--dataset-opt",
                 "synthetic.num_images=8", "--methods", "toy-dark,toy-dark+toy-sharpen,otsu", "--no-progress",
                 "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["status"]) == {"ok"} and len(summary) == 6
    squares = summary[summary["dataset"] == "toy-squares"].set_index("method")
    assert squares.loc["toy-dark", "dataset_dice_square"] == 1.0  # the squares are exactly the dark pixels
    assert squares.loc["toy-dark+toy-sharpen", "base_cell"] == squares.loc["toy-dark", "cell"]  # shares its base
    report = (out / "report.md").read_text()
    assert "toy-dark+toy-sharpen" in report and "toy-squares" in report


def _registering_modules(package) -> list[str]:
    """The modules of a package folder whose source registers something (``@...register(``)."""
    found = []
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        spec = importlib.util.find_spec(info.name)
        if spec and spec.origin and spec.origin.endswith(".py") and ".register(" in open(spec.origin).read():
            found.append(info.name)
    return found


@pytest.mark.parametrize("package", [segbench.methods, segbench.datasets])
def test_every_module_that_registers_is_imported_by_its_package(package):
    """A method, stage or dataset module the package's ``__init__`` forgets would register nothing."""
    modules = _registering_modules(package)
    assert "segbench.methods.classical.threshold" in modules or "segbench.datasets.ph2" in modules
    assert modules and all(name in sys.modules for name in modules), [m for m in modules if m not in sys.modules]


def test_every_registered_dataset_has_a_fixture():
    """tests/conftest.py's DATASET_FIXTURES: the contract tests build each registered dataset from it."""
    assert sorted(DATASET_FIXTURES) == sorted(DATASETS.names())
