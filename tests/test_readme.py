"""The README's "Adding a method" snippet runs as written: registered, fitted, scored in a tiny grid."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from segbench.cli import main
from segbench.methods import METHODS

README = Path(__file__).resolve().parents[1] / "README.md"


def _adding_a_method_snippet() -> str:
    section = README.read_text().split("## Adding a method", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the README's 'Adding a method' section should hold one python block"
    return blocks[0]


def test_readme_method_snippet_runs_in_a_grid(tmp_path, monkeypatch, capsys):
    module = tmp_path / "mymethods.py"
    module.write_text(_adding_a_method_snippet())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    with METHODS.restored():  # the snippet registers "my-method" for this test only
        code = main(["run", "--import", "./mymethods.py", "--datasets", "synthetic", "--methods", "my-method,constant",
                     "--dataset-opt", "synthetic.num_images=12", "--quick", "--opt", "my-method.max_pixels=300",
                     "--out", str(out), "--no-progress"])
        assert code == 0, capsys.readouterr().err
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["my-method", "status"] == "ok"
    config = json.loads(summary.loc["my-method", "method_config"])
    assert config["max_pixels"] == 300 and config["temperature"] == 1000.0  # --opt through self.opts; default kept
    # It learned something from the Samples: above the floor (constant scores 0 on the lesion).
    assert summary.loc["my-method", "dataset_dice_lesion"] > summary.loc["constant", "dataset_dice_lesion"] + 0.05
